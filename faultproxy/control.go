package faultproxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// Link is one direction of a proxied pair and its faults, as the control API shows and takes them:
// durations in Go syntax ("20ms").
type Link struct {
	From        int     `json:"from"`
	To          int     `json:"to"`
	Delay       string  `json:"delay,omitempty"`
	Jitter      string  `json:"jitter,omitempty"`
	Loss        float64 `json:"loss,omitempty"`
	BytesPerSec int64   `json:"bytes_per_sec,omitempty"`
	Blackhole   bool    `json:"blackhole,omitempty"`
	Refuse      bool    `json:"refuse,omitempty"`
}

func (l Link) faults() (Faults, error) {
	f := Faults{Loss: l.Loss, BytesPerSec: l.BytesPerSec, Blackhole: l.Blackhole, Refuse: l.Refuse}
	var err error
	if l.Delay != "" {
		if f.Delay, err = time.ParseDuration(l.Delay); err != nil || f.Delay < 0 {
			return f, fmt.Errorf("delay %q: want a duration such as 20ms", l.Delay)
		}
	}
	if l.Jitter != "" {
		if f.Jitter, err = time.ParseDuration(l.Jitter); err != nil || f.Jitter < 0 {
			return f, fmt.Errorf("jitter %q: want a duration such as 5ms", l.Jitter)
		}
	}
	if f.Loss < 0 || f.Loss > 1 || f.BytesPerSec < 0 {
		return f, fmt.Errorf("loss %v must be in [0, 1] and bytes_per_sec %d not negative", f.Loss, f.BytesPerSec)
	}
	return f, nil
}

// Links lists every direction and its faults, ordered by (from, to).
func (p *Proxy) Links() []Link {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Link
	for k, d := range p.faults {
		f := d.Load()
		l := Link{From: k[0], To: k[1], Loss: f.Loss, BytesPerSec: f.BytesPerSec, Blackhole: f.Blackhole, Refuse: f.Refuse}
		if f.Delay > 0 {
			l.Delay = f.Delay.String()
		}
		if f.Jitter > 0 {
			l.Jitter = f.Jitter.String()
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].From < out[j].From || (out[i].From == out[j].From && out[i].To < out[j].To)
	})
	return out
}

// Handler is the control API: GET /links lists every direction; PUT /links/{from}/{to} with a
// Link's JSON sets that direction's faults (from and to in the body are ignored); POST /heal
// clears every fault. Bodies are at most 4 KiB.
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /links", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(p.Links())
	})
	mux.HandleFunc("PUT /links/{from}/{to}", func(w http.ResponseWriter, r *http.Request) {
		from, err1 := strconv.Atoi(r.PathValue("from"))
		to, err2 := strconv.Atoi(r.PathValue("to"))
		if err1 != nil || err2 != nil || !p.known(from, to) {
			http.Error(w, "no such link", http.StatusNotFound)
			return
		}
		var l Link
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&l); err != nil {
			http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
			return
		}
		f, err := l.faults()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p.Set(from, to, f)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /heal", func(w http.ResponseWriter, r *http.Request) {
		p.Heal()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// known reports whether from -> to is a direction of a proxied pair.
func (p *Proxy) known(from, to int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.faults[[2]int{from, to}]
	return ok
}
