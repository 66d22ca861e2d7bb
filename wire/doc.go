// Package wire is SofaDB's framing of byte streams, the peer handshake and the client protocol; the
// peer messages of the Paxos core are encoded by its subpackage peerwire with the same rules. wire
// itself knows nothing of the core, so clients (the load generator) import it and the state
// machine's package kv, never the core.
//
// Every codec is append-style, after encoding/binary's AppendUvarint: AppendX(dst, m) appends the
// encoding of m to a caller-owned buffer and returns it, and DecodeX(src, m) fills a caller-owned
// struct, reusing the capacity of its slices, so a connection that reuses one buffer and one struct
// encodes and decodes without allocating. Decoded byte fields alias src (the doc of each decoder says
// which): the caller copies them, or keeps src alive and unchanged, before src is reused.
//
// Integers are unsigned varints (binary.AppendUvarint), which makes the small numbers that dominate
// the protocol (replica ids, rounds, lengths, counts) one or two bytes. Decoders accept only the
// shortest varint form and only the values an encoder produces, so every message has exactly one
// encoding: decoding and re-encoding any accepted input gives back the same bytes, which the fuzz
// tests check.
//
// Bad input returns an error that matches one of the sentinel errors with errors.Is, never panics,
// and never allocates more than the input it came in could describe.
package wire
