// Command faultproxy runs SofaDB's fault proxy for a cluster started by hand, and controls it.
//
//	faultproxy serve -control 127.0.0.1:10990 -link 1:2=127.0.0.1:11012,127.0.0.1:7002 -link ...
//	faultproxy set   -control 127.0.0.1:10990 -from 1 -to 2 [-both] -delay 20ms -jitter 5ms -loss 0.1
//	faultproxy set   -control ... -from 1 -to 2 -blackhole | -refuse | -rate BYTES_PER_SEC
//	faultproxy heal  -control ...
//	faultproxy show  -control ...
//
// serve takes one -link per pair, dialer:target=LISTEN,TARGET: the replica with the lower id
// (the dialer) must be given LISTEN as its peer's address (scripts/local-cluster.sh --faults
// does all of this). Each direction of each pair then takes its own faults through the control
// address, at run time.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sofadb/sofadb/faultproxy"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(2)
	}
}

type links []string

func (l *links) String() string     { return strings.Join(*l, " ") }
func (l *links) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: faultproxy serve|set|heal|show [flags] (faultproxy CMD -h for the flags)")
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("faultproxy "+cmd, flag.ContinueOnError)
	control := fs.String("control", "127.0.0.1:10990", "address of the proxy's control API")
	switch cmd {
	case "serve":
		var ls links
		fs.Var(&ls, "link", "one pair: dialer:target=LISTEN,TARGET (repeat for every pair)")
		seed := fs.Uint64("seed", 1, "seed of the proxy's random choices (loss, jitter)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return serve(*control, ls, *seed, out)
	case "set":
		from := fs.Int("from", 0, "sending replica")
		to := fs.Int("to", 0, "receiving replica")
		both := fs.Bool("both", false, "both directions")
		var l faultproxy.Link
		fs.StringVar(&l.Delay, "delay", "", "added delay, e.g. 20ms")
		fs.StringVar(&l.Jitter, "jitter", "", "up to this much more, e.g. 5ms")
		fs.Float64Var(&l.Loss, "loss", 0, "fraction of frames lost, 0..1")
		fs.Int64Var(&l.BytesPerSec, "rate", 0, "bandwidth cap, bytes/s (0: none)")
		fs.BoolVar(&l.Blackhole, "blackhole", false, "drop every frame")
		fs.BoolVar(&l.Refuse, "refuse", false, "cut the connection and refuse new ones")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *from == 0 || *to == 0 {
			return errors.New("set: -from and -to are required")
		}
		if err := put(*control, *from, *to, l); err != nil {
			return err
		}
		if *both {
			return put(*control, *to, *from, l)
		}
		return nil
	case "heal":
		if err := fs.Parse(args); err != nil {
			return err
		}
		return call(http.MethodPost, "http://"+*control+"/heal", nil, nil)
	case "show":
		if err := fs.Parse(args); err != nil {
			return err
		}
		var ls []faultproxy.Link
		if err := call(http.MethodGet, "http://"+*control+"/links", nil, &ls); err != nil {
			return err
		}
		for _, l := range ls {
			b, _ := json.Marshal(l)
			fmt.Fprintln(out, string(b))
		}
		return nil
	}
	return fmt.Errorf("unknown command %q: want serve, set, heal or show", cmd)
}

func serve(control string, ls links, seed uint64, out io.Writer) error {
	if len(ls) == 0 {
		return errors.New("serve: at least one -link")
	}
	p := faultproxy.New(seed)
	defer p.Close()
	for _, l := range ls {
		ids, addrs, ok := strings.Cut(l, "=")
		d, t, ok1 := strings.Cut(ids, ":")
		listen, target, ok2 := strings.Cut(addrs, ",")
		dialer, err1 := strconv.Atoi(d)
		tgt, err2 := strconv.Atoi(t)
		if !ok || !ok1 || !ok2 || err1 != nil || err2 != nil || dialer <= 0 || tgt <= 0 {
			return fmt.Errorf("-link %q: want dialer:target=LISTEN,TARGET", l)
		}
		addr, err := p.AddPairAt(dialer, tgt, listen, target)
		if err != nil {
			return fmt.Errorf("-link %q: %w", l, err)
		}
		fmt.Fprintf(out, "link %d->%d: listening on %s for %s\n", dialer, tgt, addr, target)
	}
	srv := &http.Server{Addr: control, Handler: p.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Fprintf(out, "control API on http://%s (GET /links, PUT /links/FROM/TO, POST /heal)\n", control)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		return err
	case <-sig:
		return srv.Close()
	}
}

func put(control string, from, to int, l faultproxy.Link) error {
	body, _ := json.Marshal(l)
	return call(http.MethodPut, fmt.Sprintf("http://%s/links/%d/%d", control, from, to), body, nil)
}

func call(method, url string, body []byte, into any) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		return fmt.Errorf("%s %s: %s: %s", method, url, res.Status, strings.TrimSpace(string(msg)))
	}
	if into != nil {
		return json.NewDecoder(res.Body).Decode(into)
	}
	return nil
}
