package transport

import "sync"

// Buffers of the TCP mapping are taken from these pools only while bytes are
// in flight and given back as soon as a connection has nothing buffered, so
// that an idle connection holds none.
//
// A read buffer is smallBuf bytes, or midBuf or largeBuf for a chunk that
// does not fit, taken as the chunk's bytes arrive (largeBuf holds the
// largest chunk with its padding). Write buffers start at smallBuf and grow
// by append; one grown past maxPooledWrite is dropped rather than pooled.
const (
	smallBuf       = 4096
	midBuf         = 16384
	largeBuf       = maxChunkLen + 1 // pad4(maxChunkLen)
	maxPooledWrite = 4 * sendQueueBytes
)

var (
	smallReadBufs = sync.Pool{New: func() any { b := make([]byte, smallBuf); return &b }}
	midReadBufs   = sync.Pool{New: func() any { b := make([]byte, midBuf); return &b }}
	largeReadBufs = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}
	writeBufs     = sync.Pool{New: func() any { b := make([]byte, 0, smallBuf); return &b }}
)

// getReadBuf returns a pooled buffer of at least n bytes (n ≤ largeBuf).
func getReadBuf(n int) *[]byte {
	switch {
	case n <= smallBuf:
		return smallReadBufs.Get().(*[]byte)
	case n <= midBuf:
		return midReadBufs.Get().(*[]byte)
	}
	return largeReadBufs.Get().(*[]byte)
}

func putReadBuf(p *[]byte) {
	switch len(*p) {
	case smallBuf:
		smallReadBufs.Put(p)
	case midBuf:
		midReadBufs.Put(p)
	default:
		largeReadBufs.Put(p)
	}
}

// getWriteBuf returns an empty pooled write buffer.
func getWriteBuf() []byte { return (*writeBufs.Get().(*[]byte))[:0] }

func putWriteBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledWrite {
		return
	}
	b = b[:0]
	writeBufs.Put(&b)
}
