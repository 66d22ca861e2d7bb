package wire

import (
	"errors"
	"testing"
)

var clusterKey = []byte("0123456789abcdef0123456789abcdef")

// TestHandshake runs the whole exchange through frames, as two replicas would.
func TestHandshake(t *testing.T) {
	const a, b uint16 = 1, 2
	ida, idb := Identity{1, 2, 3}, Identity{4, 5, 6}
	hello := Hello{From: a, To: b, Identity: ida, Nonce: NewNonce()}

	// b receives the Hello and answers.
	var gotHello Hello
	mustDecodeFrame(t, AppendHelloFrame(nil, &hello), TypeHello, func(p []byte) error {
		_, err := DecodeHello(p, &gotHello)
		return err
	})
	if gotHello != hello {
		t.Fatalf("hello %+v, want %+v", gotHello, hello)
	}
	ch := Challenge{From: b, Identity: idb, Nonce: NewNonce()}
	ch.MAC = HandshakeMAC(clusterKey, RoleResponder, NewTranscript(&gotHello, &ch))

	// a checks the Challenge and proves itself.
	var gotCh Challenge
	mustDecodeFrame(t, AppendChallengeFrame(nil, &ch), TypeChallenge, func(p []byte) error {
		_, err := DecodeChallenge(p, &gotCh)
		return err
	})
	if gotCh != ch || !CheckMAC(&gotCh.MAC, clusterKey, RoleResponder, NewTranscript(&hello, &gotCh)) {
		t.Fatal("a refuses b's challenge")
	}
	proof := Proof{MAC: HandshakeMAC(clusterKey, RoleInitiator, NewTranscript(&hello, &gotCh))}

	// b checks the Proof.
	var gotProof Proof
	mustDecodeFrame(t, AppendProofFrame(nil, &proof), TypeProof, func(p []byte) error {
		_, err := DecodeProof(p, &gotProof)
		return err
	})
	if !CheckMAC(&gotProof.MAC, clusterKey, RoleInitiator, NewTranscript(&gotHello, &ch)) {
		t.Fatal("b refuses a's proof")
	}
}

func mustDecodeFrame(t *testing.T, frame []byte, want Type, decode func([]byte) error) {
	t.Helper()
	typ, p, err := NewReader(&loopReader{b: frame}, 0, HandshakeTypes).Next()
	if err != nil || typ != want {
		t.Fatalf("Next = %v, %v; want %v", typ, err, want)
	}
	if err := decode(p); err != nil {
		t.Fatal(err)
	}
}

// Every input of the MAC matters, and in particular a responder's MAC, which anyone can obtain by
// sending a Hello, is never an initiator's proof for the same ids and nonces.
func TestHandshakeMACBindsEverything(t *testing.T) {
	ni, nr := NewNonce(), NewNonce()
	tr := Transcript{Initiator: 1, Responder: 2, InitiatorIdentity: Identity{1}, ResponderIdentity: Identity{2},
		InitiatorNonce: ni, ResponderNonce: nr}
	base := HandshakeMAC(clusterKey, RoleInitiator, &tr)
	if !CheckMAC(&base, clusterKey, RoleInitiator, &tr) {
		t.Fatal("valid MAC refused")
	}
	other := NewNonce()
	with := func(change func(*Transcript)) *Transcript {
		c := tr
		change(&c)
		return &c
	}
	for name, ok := range map[string]bool{
		"other key":        CheckMAC(&base, []byte("another key of some length......"), RoleInitiator, &tr),
		"responder role":   CheckMAC(&base, clusterKey, RoleResponder, &tr),
		"ids swapped":      CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.Initiator, c.Responder = 2, 1 })),
		"other initiator":  CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.Initiator = 3 })),
		"other responder":  CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.Responder = 3 })),
		"nonces swapped":   CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.InitiatorNonce, c.ResponderNonce = nr, ni })),
		"other nonce i":    CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.InitiatorNonce = other })),
		"other nonce r":    CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.ResponderNonce = other })),
		"other identity i": CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.InitiatorIdentity = Identity{9} })),
		"other identity r": CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) { c.ResponderIdentity = Identity{9} })),
		"identities swapped": CheckMAC(&base, clusterKey, RoleInitiator, with(func(c *Transcript) {
			c.InitiatorIdentity, c.ResponderIdentity = c.ResponderIdentity, c.InitiatorIdentity
		})),
	} {
		if ok {
			t.Errorf("%s: MAC accepted", name)
		}
	}
	if a, b := NewNonce(), NewNonce(); a == b {
		t.Error("two nonces are equal")
	}
}

func TestHandshakeRoundTripAndMalformed(t *testing.T) {
	h := Hello{From: 65535, To: 1, Identity: Identity{15: 7}, Nonce: NewNonce()}
	c := Challenge{From: 7, Identity: Identity{3}, Nonce: NewNonce(), MAC: [MACBytes]byte{1, 2, 3}}
	p := Proof{MAC: [MACBytes]byte{31: 9}}
	encs := map[Type][]byte{
		TypeHello:     AppendHello(nil, &h),
		TypeChallenge: AppendChallenge(nil, &c),
		TypeProof:     AppendProof(nil, &p),
	}
	decode := map[Type]func([]byte) error{
		TypeHello: func(b []byte) error {
			var got Hello
			_, err := DecodeHello(b, &got)
			if err == nil && got != h {
				t.Errorf("hello %+v, want %+v", got, h)
			}
			return err
		},
		TypeChallenge: func(b []byte) error {
			var got Challenge
			_, err := DecodeChallenge(b, &got)
			if err == nil && got != c {
				t.Errorf("challenge %+v, want %+v", got, c)
			}
			return err
		},
		TypeProof: func(b []byte) error {
			var got Proof
			_, err := DecodeProof(b, &got)
			if err == nil && got != p {
				t.Errorf("proof %+v, want %+v", got, p)
			}
			return err
		},
	}
	for typ, enc := range encs {
		if err := decode[typ](enc); err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		for n := range len(enc) {
			if err := decode[typ](enc[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v prefix %d: %v", typ, n, err)
			}
		}
		if err := decode[typ](append(enc, 0)); !errors.Is(err, ErrTrailing) {
			t.Fatalf("%v trailing: %v", typ, err)
		}
		for other, oenc := range encs {
			if other != typ {
				if err := decode[typ](oenc); !errors.Is(err, ErrUnknownType) {
					t.Fatalf("%v decoding %v: %v", typ, other, err)
				}
			}
		}
	}
}
