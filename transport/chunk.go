package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Chunk types of the TCP mapping (draft-ietf-rserpool-tcpmapping-03 §3).
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Chunk Type   |  Chunk Flags  |         Chunk Length          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	\                  Chunk Value (Length - 4 bytes)               /
//	/                  zero padding to a multiple of 4              \
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	chunkData     uint8 = 0
	chunkInit     uint8 = 1
	chunkAck      uint8 = 3
	chunkHB       uint8 = 4
	chunkHBAck    uint8 = 5
	chunkHdrLen         = 4
	maxChunkLen         = 0xffff
	dataFlagU     uint8 = 0x04 // DATA: unordered
	initNoTSN     uint8 = 0x01 // INIT: my DATA chunks carry no TSN (and your ACKs should not)
	initNoStream  uint8 = 0x02 // INIT: my DATA chunks carry no SID/SSN word
	initNoPPID    uint8 = 0x04 // INIT: my DATA chunks carry no PPID
	hbInfoType          = 0x0001
	dataHdrFull         = 16 // DATA header with TSN, SID/SSN and PPID (INIT flags 0x00)
	hbInfoLen           = 4 + 16
	hbChunkLen          = chunkHdrLen + hbInfoLen
	ackChunkLen         = 8
	ackChunkShort       = 4
)

// Errors that end a TCP-mapping connection. They are wrapped with details;
// test with errors.Is.
var (
	// ErrProtocol reports a peer that broke the TCP mapping's rules
	// (bad chunk length, duplicate or late INIT, TSN out of sequence...).
	ErrProtocol = errors.New("transport: TCP mapping protocol violation")
	// ErrTooLarge reports a chunk or message above Config.MaxMessageSize.
	ErrTooLarge = errors.New("transport: message too large")
	// ErrHeartbeatTimeout reports HeartbeatMaxMissed consecutive unanswered
	// HEARTBEATs (the TCP mapping's COMM_LOST).
	ErrHeartbeatTimeout = errors.New("transport: peer missed heartbeats")
	// ErrChunkTimeout reports a chunk that started arriving but did not
	// complete within Config.ChunkTimeout.
	ErrChunkTimeout = errors.New("transport: partial chunk not completed in time")
)

func pad4(n int) int { return (n + 3) &^ 3 }

// chunk is one received chunk; value aliases the connection's read buffer
// and is valid until the next chunk is read.
type chunk struct {
	typ, flags uint8
	value      []byte // Length-4 bytes, padding excluded
}

// parseChunkHeader checks a chunk header and returns its type, flags,
// length and total size on the wire (with padding). A length below 4 or
// above maxLen is refused before anything is allocated for the body.
func parseChunkHeader(h []byte, maxLen int) (typ, flags uint8, length, total int, err error) {
	length = int(binary.BigEndian.Uint16(h[2:]))
	if length < chunkHdrLen {
		return 0, 0, 0, 0, fmt.Errorf("%w: chunk length %d < 4", ErrProtocol, length)
	}
	if length > maxLen {
		return 0, 0, 0, 0, fmt.Errorf("%w: chunk type %d length %d > %d", ErrTooLarge, h[0], length, maxLen)
	}
	return h[0], h[1], length, pad4(length), nil
}

// dataHeaderLen is the DATA header size for a peer's INIT flags.
func dataHeaderLen(initFlags uint8) int {
	n := dataHdrFull
	if initFlags&initNoTSN != 0 {
		n -= 4
	}
	if initFlags&initNoStream != 0 {
		n -= 4
	}
	if initFlags&initNoPPID != 0 {
		n -= 4
	}
	return n
}

// dataFields is a parsed DATA chunk.
type dataFields struct {
	tsn       uint32
	hasTSN    bool
	stream    uint16
	ssn       uint16
	ppid      uint32
	unordered bool
	payload   []byte // aliases the chunk value
}

// parseData decodes a DATA chunk's value as formatted by a peer whose INIT
// carried initFlags.
func parseData(c chunk, initFlags uint8) (dataFields, error) {
	v := c.value
	need := dataHeaderLen(initFlags) - chunkHdrLen
	if len(v) < need {
		return dataFields{}, fmt.Errorf("%w: DATA length %d shorter than its header %d", ErrProtocol, len(v)+chunkHdrLen, need+chunkHdrLen)
	}
	d := dataFields{unordered: c.flags&dataFlagU != 0}
	if initFlags&initNoTSN == 0 {
		d.tsn, d.hasTSN = binary.BigEndian.Uint32(v), true
		v = v[4:]
	}
	if initFlags&initNoStream == 0 {
		d.stream = binary.BigEndian.Uint16(v)
		d.ssn = binary.BigEndian.Uint16(v[2:])
		v = v[4:]
	}
	if initFlags&initNoPPID == 0 {
		d.ppid = binary.BigEndian.Uint32(v)
		v = v[4:]
	}
	d.payload = v
	return d, nil
}

// appendData appends a full-form DATA chunk (our INIT flags are 0x00) with
// its padding.
func appendData(b []byte, tsn uint32, stream, ssn uint16, ppid uint32, msg []byte) []byte {
	length := dataHdrFull + len(msg)
	b = append(b, chunkData, 0, byte(length>>8), byte(length))
	b = binary.BigEndian.AppendUint32(b, tsn)
	b = binary.BigEndian.AppendUint16(b, stream)
	b = binary.BigEndian.AppendUint16(b, ssn)
	b = binary.BigEndian.AppendUint32(b, ppid)
	b = append(b, msg...)
	return append(b, make([]byte, pad4(length)-length)...)
}

// appendAck appends an ACK, with the TSN unless the peer's INIT asked to omit it.
func appendAck(b []byte, tsn uint32, withTSN bool) []byte {
	if !withTSN {
		return append(b, chunkAck, 0, 0, ackChunkShort)
	}
	b = append(b, chunkAck, 0, 0, ackChunkLen)
	return binary.BigEndian.AppendUint32(b, tsn)
}

// appendHeartbeat appends a HEARTBEAT whose info holds a nonce and a send
// time (opaque to the peer).
func appendHeartbeat(b []byte, nonce uint64, sentUnixNano int64) []byte {
	b = append(b, chunkHB, 0, 0, hbChunkLen)
	b = append(b, 0, hbInfoType, 0, hbInfoLen)
	b = binary.BigEndian.AppendUint64(b, nonce)
	return binary.BigEndian.AppendUint64(b, uint64(sentUnixNano))
}

// appendHeartbeatAck echoes a HEARTBEAT's value (the Heartbeat Info TLV) unchanged.
func appendHeartbeatAck(b []byte, value []byte) []byte {
	length := chunkHdrLen + len(value)
	b = append(b, chunkHBAck, 0, byte(length>>8), byte(length))
	b = append(b, value...)
	return append(b, make([]byte, pad4(length)-length)...)
}
