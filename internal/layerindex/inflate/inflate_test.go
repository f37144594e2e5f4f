package inflate

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"testing"
)

// boundary is what OnBlock saw at one block start.
type boundary struct {
	bit    int64 // input bit offset of the block
	out    int64
	window []byte
}

// sample returns data that compresses into every kind of block: text
// with repeats (dynamic Huffman, matches far back), base64 of random
// bytes (Huffman without matches) and raw random bytes (stored blocks).
func sample(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	words := []string{"layer", "index", "window", "checkpoint", "gzip", "deflate", "tar", "\n"}
	for b.Len() < n {
		switch rng.IntN(3) {
		case 0:
			for range 2000 {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(' ')
			}
		case 1:
			raw := make([]byte, 3000)
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			b.WriteString(base64.StdEncoding.EncodeToString(raw))
		default:
			raw := make([]byte, 5000)
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
			b.Write(raw)
		}
	}
	return b.Bytes()[:n]
}

func compress(t *testing.T, data []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	// A mid-stream flush makes an empty stored block and byte alignment.
	half := len(data) / 2
	w.Write(data[:half])
	w.Flush()
	w.Write(data[half:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestResumeAtEveryBlock(t *testing.T) {
	data := sample(1 << 20)
	tests := []struct {
		name  string
		level int
	}{
		{"stored", flate.NoCompression},
		{"huffman-only", flate.HuffmanOnly},
		{"fastest", flate.BestSpeed},
		{"default", flate.DefaultCompression},
		{"best", flate.BestCompression},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			comp := compress(t, data, tt.level)
			in := bytes.NewReader(comp)
			f := NewReader(in)
			var bs []boundary
			f.OnBlock(func() {
				_, nb := f.Pending()
				if nb > 7 {
					t.Fatalf("%d bits pending at a block boundary", nb)
				}
				pos := int64(len(comp) - in.Len())
				bs = append(bs, boundary{bit: pos*8 - int64(nb), out: f.Out(), window: f.Window(nil)})
			})
			got, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("decoded bytes differ")
			}
			if in.Len() != 0 {
				t.Fatalf("%d input bytes left after the final block", in.Len())
			}
			if len(bs) < 3 {
				t.Fatalf("only %d blocks", len(bs))
			}
			for i, b := range bs {
				if i%7 != 0 && i != len(bs)-1 {
					continue // every 7th keeps the test quick
				}
				if want := data[max(0, b.out-maxMatchOffset):b.out]; !bytes.Equal(b.window, want) {
					t.Fatalf("block %d: window is not the last %d bytes of output", i, len(want))
				}
				byteOff, skip := b.bit/8, uint(b.bit%8)
				var r *Reader
				if skip == 0 {
					r = Resume(bytes.NewReader(comp[byteOff:]), 0, 0, b.window)
				} else {
					r = Resume(bytes.NewReader(comp[byteOff+1:]), uint32(comp[byteOff])>>skip, 8-skip, b.window)
				}
				rest, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("block %d (bit %d): %v", i, b.bit, err)
				}
				if !bytes.Equal(rest, data[b.out:]) {
					t.Fatalf("block %d (bit %d): resumed output differs", i, b.bit)
				}
			}
		})
	}
}

func TestCorruptInput(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"reserved block type", []byte{0x07}},
		{"truncated", compress(t, sample(100000), flate.BestSpeed)[:500]},
		{"bad stored length", []byte{0x01, 0x05, 0x00, 0x00, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := io.ReadAll(NewReader(bytes.NewReader(tt.in))); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
