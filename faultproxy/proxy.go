// Package faultproxy puts a userspace fault injector on the links between SofaDB replicas: this
// machine's kernel has no netem, and the process-level tests so far could only cut whole processes.
//
// A Proxy listens once per pair of replicas, where the replica that dials its peer (the lower id)
// connects to the proxy instead, and the proxy dials the peer. Each direction of the pair has its
// own Faults, switchable at run time: added delay with jitter, loss of a fraction of frames,
// a bandwidth cap, a blackhole, and cut-and-refuse. So a link can fail one way only (a hears b,
// b does not hear a), which is what partial-connectivity scenarios need.
//
// The proxy reads SofaDB frames (wire's 9-byte prefix: version, length, checksum) and acts on whole
// frames: a lost frame is a lost message, and the stream stays well-formed, as it would after a
// real loss that TCP retransmission could not hide (a resent connection). Delay never reorders a
// stream: a frame leaves no earlier than the one before it. Bytes that do not look like a frame
// (a version other than 1, a length of 0 or over MaxFrameBytes) end the connection.
package faultproxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// Faults is what one direction of a link does to the frames it carries. The zero value passes
// everything at once.
type Faults struct {
	Delay       time.Duration // added to every frame
	Jitter      time.Duration // up to this much more, uniformly (never reordering the stream)
	Loss        float64       // fraction of frames dropped, 0..1
	BytesPerSec int64         // bandwidth cap; 0 is none
	Blackhole   bool          // every frame dropped; the connection stays up
	Refuse      bool          // the connection is cut, and new ones are closed at once
}

func (f Faults) String() string {
	switch {
	case f.Refuse:
		return "refuse"
	case f.Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("delay %v+%v loss %.2f cap %d B/s", f.Delay, f.Jitter, f.Loss, f.BytesPerSec)
}

// MaxFrameBytes bounds the frames the proxy carries (a snapshot travels in fragments; this is the
// largest payload wire accepts by default, with room).
const MaxFrameBytes = 256 << 20

const (
	prefixBytes   = 9
	frameVersion  = 1
	queuedFrames  = 1024     // frames read and waiting for their release time, per direction
	queuedBytes   = 64 << 20 // and their bytes: beyond it the reader waits (TCP back-pressure)
	dialTimeout   = 2 * time.Second
	refusePollGap = 20 * time.Millisecond
)

// Proxy is a set of proxied pairs. Its methods are safe for concurrent use.
type Proxy struct {
	seed uint64

	mu     sync.Mutex
	faults map[[2]int]*atomic.Pointer[Faults] // per direction (from, to)
	pairs  []*pair
	closed bool
	wg     sync.WaitGroup

	// Counters, for tests and reports.
	Frames, Dropped atomic.Uint64
}

// New returns a Proxy; seed makes its random choices (loss, jitter) repeatable per direction.
func New(seed uint64) *Proxy {
	return &Proxy{seed: seed, faults: map[[2]int]*atomic.Pointer[Faults]{}}
}

type pair struct {
	dialer, target int
	targetAddr     string
	ln             net.Listener
	mu             sync.Mutex
	conns          map[net.Conn]struct{}
}

// AddPair starts proxying connections that replica dialer opens to replica target (at targetAddr),
// and returns the address dialer must use for target instead.
func (p *Proxy) AddPair(dialer, target int, targetAddr string) (string, error) {
	return p.AddPairAt(dialer, target, "127.0.0.1:0", targetAddr)
}

// AddPairAt is AddPair listening on a given address (host:port; port 0 picks one).
func (p *Proxy) AddPairAt(dialer, target int, listen, targetAddr string) (string, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", err
	}
	pr := &pair{dialer: dialer, target: target, targetAddr: targetAddr, ln: ln, conns: map[net.Conn]struct{}{}}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return "", errors.New("faultproxy: closed")
	}
	p.pairs = append(p.pairs, pr)
	p.direction(dialer, target)
	p.direction(target, dialer)
	p.wg.Add(1)
	p.mu.Unlock()
	go p.serve(pr)
	return ln.Addr().String(), nil
}

// direction returns the faults cell of from->to, creating it. Called with p.mu held.
func (p *Proxy) direction(from, to int) *atomic.Pointer[Faults] {
	d := p.faults[[2]int{from, to}]
	if d == nil {
		d = &atomic.Pointer[Faults]{}
		d.Store(&Faults{})
		p.faults[[2]int{from, to}] = d
	}
	return d
}

// Set makes the frames from replica from to replica to suffer f from now on. Refuse in either
// direction cuts the pair's connections at once.
func (p *Proxy) Set(from, to int, f Faults) {
	p.mu.Lock()
	p.direction(from, to).Store(&f)
	pairs := p.pairs
	p.mu.Unlock()
	if !f.Refuse {
		return
	}
	for _, pr := range pairs {
		if (pr.dialer == from && pr.target == to) || (pr.dialer == to && pr.target == from) {
			pr.cutAll()
		}
	}
}

// SetBoth sets f in both directions between a and b.
func (p *Proxy) SetBoth(a, b int, f Faults) {
	p.Set(a, b, f)
	p.Set(b, a, f)
}

// Heal clears every fault on every link.
func (p *Proxy) Heal() {
	p.mu.Lock()
	for _, d := range p.faults {
		d.Store(&Faults{})
	}
	p.mu.Unlock()
}

// Get returns the faults from replica from to replica to.
func (p *Proxy) Get(from, to int) Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return *p.direction(from, to).Load()
}

// Close stops every listener and connection and waits for the proxy's goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	pairs := p.pairs
	p.mu.Unlock()
	for _, pr := range pairs {
		pr.ln.Close()
		pr.cutAll()
	}
	p.wg.Wait()
	return nil
}

func (pr *pair) cutAll() {
	pr.mu.Lock()
	for c := range pr.conns {
		c.Close()
	}
	pr.mu.Unlock()
}

func (pr *pair) track(c net.Conn, on bool) {
	pr.mu.Lock()
	if on {
		pr.conns[c] = struct{}{}
	} else {
		delete(pr.conns, c)
	}
	pr.mu.Unlock()
}

func (p *Proxy) serve(pr *pair) {
	defer p.wg.Done()
	p.mu.Lock()
	fwd, back := p.direction(pr.dialer, pr.target), p.direction(pr.target, pr.dialer)
	p.mu.Unlock()
	for n := uint64(0); ; n++ {
		in, err := pr.ln.Accept()
		if err != nil {
			return
		}
		if fwd.Load().Refuse || back.Load().Refuse {
			in.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			out, err := net.DialTimeout("tcp", pr.targetAddr, dialTimeout)
			if err != nil {
				in.Close()
				return
			}
			pr.track(in, true)
			pr.track(out, true)
			defer func() {
				pr.track(in, false)
				pr.track(out, false)
				in.Close()
				out.Close()
			}()
			seed := p.seed ^ uint64(pr.dialer)<<48 ^ uint64(pr.target)<<32 ^ n<<1
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); p.pump(in, out, fwd, seed); in.Close(); out.Close() }()
			go func() { defer wg.Done(); p.pump(out, in, back, seed|1); in.Close(); out.Close() }()
			wg.Wait()
		}()
	}
}

type timedFrame struct {
	b       []byte
	release time.Time
}

// pump carries frames from src to dst under the faults of its direction, until either side ends.
func (p *Proxy) pump(src, dst net.Conn, faults *atomic.Pointer[Faults], seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	q := make(chan timedFrame, queuedFrames)
	room := semaphore.NewWeighted(queuedBytes)
	weight := func(b []byte) int64 { return min(int64(len(b)), queuedBytes) } // one frame alone always fits
	done := make(chan struct{})
	go func() { // the writer: each frame at its release time, in order
		defer close(done)
		for f := range q {
			if d := time.Until(f.release); d > 0 {
				time.Sleep(d)
			}
			_, err := dst.Write(f.b)
			room.Release(weight(f.b))
			if err != nil {
				src.Close() // ends the reader, which closes q
				for f := range q {
					room.Release(weight(f.b))
				}
				return
			}
		}
	}()
	defer func() { close(q); <-done }()
	var last time.Time // release time of the last frame queued
	var head [prefixBytes]byte
	for {
		if _, err := io.ReadFull(src, head[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(head[1:5])
		if head[0] != frameVersion || n == 0 || n > MaxFrameBytes {
			return
		}
		b := make([]byte, prefixBytes+int(n))
		copy(b, head[:])
		if _, err := io.ReadFull(src, b[prefixBytes:]); err != nil {
			return
		}
		p.Frames.Add(1)
		f := faults.Load()
		if f.Refuse {
			return
		}
		if f.Blackhole || (f.Loss > 0 && rng.Float64() < f.Loss) {
			p.Dropped.Add(1)
			continue
		}
		release := time.Now().Add(f.Delay)
		if f.Jitter > 0 {
			release = release.Add(time.Duration(rng.Int64N(int64(f.Jitter))))
		}
		if f.BytesPerSec > 0 {
			// The frame starts leaving when the one before has left, at the capped rate.
			start := later(last, time.Now())
			release = later(release, start.Add(time.Duration(float64(len(b))/float64(f.BytesPerSec)*float64(time.Second))))
		}
		release = later(release, last) // a stream is never reordered
		last = release
		if room.Acquire(context.Background(), weight(b)) != nil {
			return
		}
		select {
		case q <- timedFrame{b: b, release: release}:
		case <-done:
			return
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
