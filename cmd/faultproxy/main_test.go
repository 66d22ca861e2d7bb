package main

import (
	"io"
	"strings"
	"testing"
)

func TestBadInvocationsSayWhy(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"dance"}, "unknown command"},
		{[]string{"serve"}, "at least one -link"},
		{[]string{"serve", "-link", "1-2=a"}, "want dialer:target=LISTEN,TARGET"},
		{[]string{"set", "-from", "1"}, "-from and -to are required"},
		{[]string{"set", "-from", "1", "-to", "2", "-control", "127.0.0.1:1"}, "connection refused"},
	} {
		err := run(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("faultproxy %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}
