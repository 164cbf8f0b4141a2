package wire

// ChecksumSum is the un-complemented one's-complement accumulator of the RFC
// 5353 §3.6.2 PE checksum (wire-format.md §7), kept per owner and updated
// incrementally with Add and Sub. The zero value is the sum over no PEs.
//
// The accumulator holds the plain integer sum of the PEs' folded parts, so
// Add followed by Sub of the same part restores it exactly; end-around carry
// and borrow keep the value correct modulo 0xffff should it ever exceed 32
// bits (more than 65537 PEs per owner).
type ChecksumSum uint32

func fold(s uint32) uint16 {
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}

// PEChecksumPart returns the contribution of one PE: the pool handle
// zero-padded to an even length, then its ID, summed as big-endian 16-bit
// words and folded.
func PEChecksumPart(handle PoolHandle, id uint32) ChecksumSum {
	var s uint32
	n := len(handle)
	for i := 0; i+1 < n; i += 2 {
		s += uint32(handle[i])<<8 | uint32(handle[i+1])
	}
	if n&1 == 1 {
		s += uint32(handle[n-1]) << 8
	}
	s += id>>16 + id&0xffff
	return ChecksumSum(fold(s))
}

// Add returns s plus the part p (one's-complement addition).
func (s ChecksumSum) Add(p ChecksumSum) ChecksumSum {
	r := s + p
	if r < s {
		r++
	}
	return r
}

// Sub returns s minus the part p (one's-complement subtraction); p must
// have been added before.
func (s ChecksumSum) Sub(p ChecksumSum) ChecksumSum {
	r := s - p
	if s < p {
		r--
	}
	return r
}

// Checksum folds and complements s into the 16-bit value sent in
// ENRP_PRESENCE (0xffff for no PEs).
func (s ChecksumSum) Checksum() uint16 { return ^fold(uint32(s)) }
