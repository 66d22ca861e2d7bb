package wire

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	for i, want := range sampleRequests() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			enc := AppendRequest(nil, &want)
			var got Request
			if n, err := DecodeRequest(enc, &got); err != nil || n != len(enc) {
				t.Fatalf("DecodeRequest = %d, %v", n, err)
			}
			if !sameRequest(&got, &want) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
			if !bytes.Equal(AppendRequest(nil, &got), enc) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, want := range sampleResponses() {
		t.Run(want.Status.String(), func(t *testing.T) {
			enc := AppendResponse(nil, &want)
			var got Response
			if n, err := DecodeResponse(enc, &got); err != nil || n != len(enc) {
				t.Fatalf("DecodeResponse = %d, %v", n, err)
			}
			if !sameResponse(&got, &want) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
			if !bytes.Equal(AppendResponse(nil, &got), enc) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func TestClientMalformed(t *testing.T) {
	req := AppendRequest(nil, &Request{ClientID: 1, Seq: 2, Op: 1, Key: []byte("k")})
	resp := AppendResponse(nil, &Response{Seq: 1, Status: StatusOK})
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
		in     []byte
		want   error
	}{
		{"request: empty", decodeRequest, nil, ErrTruncated},
		{"request: response bytes", decodeRequest, resp, ErrUnknownType},
		{"request: op 0", decodeRequest, []byte{byte(TypeRequest), 1, 2, 0, 0, 0}, ErrBadOp},
		{"request: op 5", decodeRequest, []byte{byte(TypeRequest), 1, 2, 5, 0, 0}, ErrBadOp},
		{"request: trailing", decodeRequest, append(req, 0), ErrTrailing},
		{"request: value beyond input", decodeRequest, []byte{byte(TypeRequest), 1, 2, 1, 0, 3, 'v'}, ErrTruncated},
		{"request: seq overflow", decodeRequest, []byte{byte(TypeRequest), 1,
			0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 0, 0}, ErrVarint},
		{"response: request bytes", decodeResponse, req, ErrUnknownType},
		{"response: status 0", decodeResponse, []byte{byte(TypeResponse), 1, 0, 0, 0, 0}, ErrRange},
		{"response: status 10", decodeResponse, []byte{byte(TypeResponse), 1, 10, 0, 0, 0}, ErrRange},
		{"response: leader above 65535", decodeResponse, []byte{byte(TypeResponse), 1, 1, 0x80, 0x80, 0x04, 0, 0}, ErrRange},
		{"response: trailing", decodeResponse, append(resp, 1), ErrTrailing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func decodeRequest(b []byte) error  { _, err := DecodeRequest(b, new(Request)); return err }
func decodeResponse(b []byte) error { _, err := DecodeResponse(b, new(Response)); return err }

func TestClientTruncated(t *testing.T) {
	for _, r := range sampleRequests()[:3] {
		enc := AppendRequest(nil, &r)
		for n := range len(enc) {
			if err := decodeRequest(enc[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("request prefix %d: %v", n, err)
			}
		}
	}
	r := sampleResponses()[2]
	enc := AppendResponse(nil, &r)
	for n := range len(enc) {
		if err := decodeResponse(enc[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("response prefix %d: %v", n, err)
		}
	}
}

func TestStatusString(t *testing.T) {
	want := []string{"status(0)", "ok", "not-found", "not-leader", "busy", "too-large", "bad-request",
		"unavailable", "stale", "session-expired", "status(10)"}
	for s := range Status(len(want)) {
		if got := s.String(); got != want[s] {
			t.Errorf("Status(%d) = %q, want %q", s, got, want[s])
		}
		if s.Valid() != (s > 0 && s < 10) {
			t.Errorf("Status(%d).Valid() = %v", s, s.Valid())
		}
	}
}
