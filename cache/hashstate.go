package cache

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash"
)

// A chunk table of this version records, for each chunk but the last,
// sha256's chaining value after the blob's bytes up to the chunk's end
// (and for the last chunk the digest itself). The verification computes
// them for free while it hashes the blob in order. A chunk i alone is
// then checked by resuming sha256 from the value recorded for chunk i-1
// (the initial state for chunk 0), hashing the chunk and comparing with
// the value recorded for chunk i: forging a chunk that passes is finding
// a second preimage for sha256's compression function chain. Chunk
// boundaries fall on sha256 blocks because the chunk size is a multiple
// of 4 KiB. The chaining values travel through the hash's documented
// BinaryMarshaler state.

const (
	stateMagic = "sha\x03"
	stateSize  = len(stateMagic) + 32 + sha256.BlockSize + 8
)

// chainingValue returns h's state after a whole number of blocks.
func chainingValue(h hash.Hash) [32]byte {
	var cv [32]byte
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	copy(cv[:], b[len(stateMagic):])
	return cv
}

// resume returns a sha256 that has hashed n bytes (a multiple of the
// block size) and reached chaining value cv.
func resume(cv [32]byte, n int64) hash.Hash {
	h := sha256.New()
	if n == 0 {
		return h
	}
	b := make([]byte, stateSize)
	copy(b, stateMagic)
	copy(b[len(stateMagic):], cv[:])
	binary.BigEndian.PutUint64(b[stateSize-8:], uint64(n))
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		panic("cache: sha256 state: " + err.Error())
	}
	return h
}
