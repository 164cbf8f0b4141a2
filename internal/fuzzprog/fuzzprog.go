// Package fuzzprog reads a fuzz input as a program: a sequence of
// operation codes and operands, for fuzz targets that drive a state
// machine step by step.
//
// # Usage
//
//	p := fuzzprog.New(data)
//	for p.More() {
//		switch p.Byte() % 4 { case 0: n := p.U16(); b := p.Bytes(int(n)); ... }
//	}
//
// # Limitations
//
// Reads past the end return zeros (Bytes returns what is left), so every
// input is a valid program.
package fuzzprog

// Program is a fuzz input being read. Not safe for concurrent use.
type Program struct{ b []byte }

// New returns a Program over data.
func New(data []byte) *Program { return &Program{b: data} }

// More reports whether input is left.
func (p *Program) More() bool { return len(p.b) > 0 }

// Byte reads one byte (0 at the end).
func (p *Program) Byte() byte {
	if len(p.b) == 0 {
		return 0
	}
	x := p.b[0]
	p.b = p.b[1:]
	return x
}

// U16 reads a big-endian uint16.
func (p *Program) U16() uint16 { return uint16(p.Byte())<<8 | uint16(p.Byte()) }

// U32 reads a big-endian uint32.
func (p *Program) U32() uint32 { return uint32(p.U16())<<16 | uint32(p.U16()) }

// Bytes reads n bytes, or what is left.
func (p *Program) Bytes(n int) []byte {
	n = min(n, len(p.b))
	x := p.b[:n]
	p.b = p.b[n:]
	return x
}
