package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
)

// Sizes of the handshake's fixed fields, in bytes.
const (
	// NonceBytes is long enough that a random nonce never repeats across the life of a cluster key.
	NonceBytes = 16
	// IdentityBytes is the size of a replica's identity: random, created with its data directory.
	IdentityBytes = 16
	// MACBytes is the size of an HMAC-SHA256.
	MACBytes = sha256.Size
)

// Identity names one replica's data directory: created at random on its first start and kept
// there, so two processes that claim the same replica id (a copy started at another address, or a
// replica whose data was wiped) are told apart. Two acceptors answering under one id break the
// quorum arithmetic; the handshake carries identities so peers can refuse the second one.
type Identity [IdentityBytes]byte

// Hello opens the peer handshake: who is calling whom, the caller's identity and its fresh nonce.
// The handshake is a mutual challenge-response over the cluster key, run on a fresh peer connection
// before any of its frames is trusted:
//
//  1. the dialer (initiator) sends Hello{From: itself, To: the replica it meant to reach,
//     Identity: Ii, Nonce: Ni};
//  2. the responder checks To is itself and From a member, and answers Challenge{From: itself,
//     Identity: Ir, Nonce: Nr, MAC: HandshakeMAC(key, RoleResponder, transcript)}, proving it
//     holds the key and is answering this Hello (Ni is fresh);
//  3. the initiator checks Challenge.From and the MAC, and sends Proof{MAC: HandshakeMAC(key,
//     RoleInitiator, transcript)}, proving it holds the key now (Nr is fresh);
//  4. the responder checks the Proof; from here on the connection's frames come from From.
//
// The transcript is both ids, both identities and both nonces. Each MAC binds a role label and the
// whole transcript, so a MAC from one session, one pair of replicas or one direction is worthless
// in any other: in particular a responder MAC (which anyone can make a responder compute, by
// sending a Hello) is never a valid initiator Proof, and an identity cannot be swapped in transit.
// It authenticates the peer at connect time; it does not protect the frames that follow from an
// on-path attacker, which would take a per-frame MAC or TLS.
type Hello struct {
	From, To uint16
	Identity Identity
	Nonce    [NonceBytes]byte
}

// Challenge answers a Hello with the responder's identity, its fresh nonce and its proof of the key.
type Challenge struct {
	From     uint16
	Identity Identity
	Nonce    [NonceBytes]byte
	MAC      [MACBytes]byte
}

// Proof completes the handshake with the initiator's proof of the key.
type Proof struct {
	MAC [MACBytes]byte
}

// Transcript is what both handshake MACs cover: the initiator's and the responder's ids,
// identities and nonces.
type Transcript struct {
	Initiator, Responder                 uint16
	InitiatorIdentity, ResponderIdentity Identity
	InitiatorNonce, ResponderNonce       [NonceBytes]byte
}

// NewTranscript is the transcript of a Hello and the Challenge that answers it.
func NewTranscript(h *Hello, c *Challenge) *Transcript {
	return &Transcript{Initiator: h.From, Responder: c.From, InitiatorIdentity: h.Identity, ResponderIdentity: c.Identity,
		InitiatorNonce: h.Nonce, ResponderNonce: c.Nonce}
}

// Role says which side of the handshake a MAC speaks for; it is part of what is MACed, so the two
// sides' MACs are never interchangeable.
type Role uint8

// Handshake roles.
const (
	// RoleInitiator is the replica that dialled the connection and sends Hello and Proof.
	RoleInitiator Role = 1
	// RoleResponder is the replica that accepted the connection and sends Challenge.
	RoleResponder Role = 2
)

// macDomain separates these MACs from anything else the cluster key might ever be used for (and
// from version 1's, which did not carry identities).
const macDomain = "sofadb peer handshake v2\x00"

// HandshakeMAC computes the MAC that role sends, over the domain label, the role and the transcript
// (the initiator's fields before the responder's, whoever computes it). Every input has a fixed
// size, so no two different inputs concatenate to the same bytes. key should be at least 32 random
// bytes shared by every member of the cluster.
func HandshakeMAC(key []byte, role Role, t *Transcript) [MACBytes]byte {
	var msg [len(macDomain) + 1 + 2 + 2 + 2*IdentityBytes + 2*NonceBytes]byte
	b := append(msg[:0], macDomain...)
	b = append(b, byte(role))
	b = binary.BigEndian.AppendUint16(b, t.Initiator)
	b = binary.BigEndian.AppendUint16(b, t.Responder)
	b = append(b, t.InitiatorIdentity[:]...)
	b = append(b, t.ResponderIdentity[:]...)
	b = append(b, t.InitiatorNonce[:]...)
	b = append(b, t.ResponderNonce[:]...)
	h := hmac.New(sha256.New, key)
	h.Write(b)
	var mac [MACBytes]byte
	h.Sum(mac[:0])
	return mac
}

// CheckMAC reports whether mac is the one role should have sent, comparing in constant time so the
// check leaks nothing about the expected MAC.
func CheckMAC(mac *[MACBytes]byte, key []byte, role Role, t *Transcript) bool {
	want := HandshakeMAC(key, role, t)
	return hmac.Equal(mac[:], want[:])
}

// NewNonce returns a fresh random nonce from crypto/rand (which does not fail on supported
// platforms: it aborts the program rather than return predictable bytes).
func NewNonce() [NonceBytes]byte {
	var n [NonceBytes]byte
	_, _ = rand.Read(n[:])
	return n
}

// AppendHello appends type byte TypeHello, From, To, the identity and the nonce.
func AppendHello(dst []byte, h *Hello) []byte {
	dst = append(dst, byte(TypeHello))
	dst = binary.AppendUvarint(dst, uint64(h.From))
	dst = binary.AppendUvarint(dst, uint64(h.To))
	dst = append(dst, h.Identity[:]...)
	return append(dst, h.Nonce[:]...)
}

// DecodeHello decodes a Hello that fills src exactly; nothing in h aliases src.
func DecodeHello(src []byte, h *Hello) (n int, err error) {
	d := Decoder{src: src}
	d.typ(TypeHello)
	h.From = d.ReplicaID("from")
	h.To = d.ReplicaID("to")
	d.Fixed(h.Identity[:], "identity")
	d.Fixed(h.Nonce[:], "nonce")
	return d.Finish()
}

// AppendChallenge appends type byte TypeChallenge, From, the identity, the nonce and the MAC.
func AppendChallenge(dst []byte, c *Challenge) []byte {
	dst = append(dst, byte(TypeChallenge))
	dst = binary.AppendUvarint(dst, uint64(c.From))
	dst = append(dst, c.Identity[:]...)
	dst = append(dst, c.Nonce[:]...)
	return append(dst, c.MAC[:]...)
}

// DecodeChallenge decodes a Challenge that fills src exactly; nothing in c aliases src.
func DecodeChallenge(src []byte, c *Challenge) (n int, err error) {
	d := Decoder{src: src}
	d.typ(TypeChallenge)
	c.From = d.ReplicaID("from")
	d.Fixed(c.Identity[:], "identity")
	d.Fixed(c.Nonce[:], "nonce")
	d.Fixed(c.MAC[:], "mac")
	return d.Finish()
}

// AppendProof appends type byte TypeProof and the MAC.
func AppendProof(dst []byte, p *Proof) []byte {
	dst = append(dst, byte(TypeProof))
	return append(dst, p.MAC[:]...)
}

// DecodeProof decodes a Proof that fills src exactly; nothing in p aliases src.
func DecodeProof(src []byte, p *Proof) (n int, err error) {
	d := Decoder{src: src}
	d.typ(TypeProof)
	d.Fixed(p.MAC[:], "mac")
	return d.Finish()
}
