// Package peerwire is the binary encoding of the Paxos core's peer messages and log entries: what
// replicas send each other after the handshake, and what disk/ stores for each slot. It follows
// package wire's rules (append-style codecs, decoders that alias their input, accept only the
// shortest form, and refuse bad input with wire's sentinel errors) and shares its Decoder.
package peerwire
