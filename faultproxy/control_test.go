package faultproxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestControlAPISetsListsAndHeals(t *testing.T) {
	p := New(1)
	defer p.Close()
	if _, err := p.AddPair(1, 2, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	put := func(path, body string) int {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+path, strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code := put("/links/1/2", `{"delay":"20ms","jitter":"5ms","loss":0.1}`); code != http.StatusNoContent {
		t.Fatalf("PUT: %d", code)
	}
	if f := p.Get(1, 2); f.Delay != 20*time.Millisecond || f.Jitter != 5*time.Millisecond || f.Loss != 0.1 {
		t.Fatalf("faults after PUT: %+v", f)
	}
	for path, body := range map[string]string{"/links/1/2#": `{"delay":"soon"}`, "/links/1/2": `{"loss":2}`, "/links/1/3": `{}`, "/links/x/2": `{}`} {
		if code := put(strings.TrimSuffix(path, "#"), body); code == http.StatusNoContent {
			t.Errorf("PUT %s %s accepted", path, body)
		}
	}
	res, err := http.Get(srv.URL + "/links")
	if err != nil {
		t.Fatal(err)
	}
	var links []Link
	json.NewDecoder(res.Body).Decode(&links)
	res.Body.Close()
	if len(links) != 2 || links[0].From != 1 || links[0].Delay != "20ms" || links[1].From != 2 || links[1].Delay != "" {
		t.Fatalf("GET /links: %+v", links)
	}
	if res, err := http.Post(srv.URL+"/heal", "", nil); err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("POST /heal: %v %v", res, err)
	}
	if f := p.Get(1, 2); f != (Faults{}) {
		t.Fatalf("after heal: %+v", f)
	}
}
