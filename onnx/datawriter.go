package onnx

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// dataWriter appends tensors to a temporary data file at ExternalAlign-aligned offsets,
// hashing what it writes into the file's id. The writing happens on a goroutine of its own,
// behind the caller: while tensors go to the disk, Save reads and transforms the next one.
// Offsets are fixed when a tensor is queued, so the file's layout and id are those of a
// sequential write; the padding between tensors is never written (a hole reads as zeros).
// Buffers from the pool go to the disk by direct I/O, as directChunk pieces kept directQueue
// in flight across tensors (a tensor's buffer goes back to the pool when its last piece is
// written), so the disk always has a deep queue, small tensors included.
type dataWriter struct {
	p      *PendingFile
	direct *os.File // p's file opened with O_DIRECT (nil: not available); worker only
	pool   *bufPool
	off    int64 // end of the data queued so far
	h      hash.Hash
	ops    chan writeOp
	done   chan struct{}
	closed bool

	slots    chan struct{}  // one per direct piece in flight
	inflight sync.WaitGroup // the pieces in flight
	buffered atomic.Bool    // a direct write was refused: the rest go through the page cache

	heldMu sync.Mutex
	heldCh *sync.Cond // signalled when held falls
	held   int        // bytes of buffers whose pieces are still in flight

	mu  sync.Mutex
	err error // the first error, the worker's or a piece's
}

// writeOp is one queued tensor: bytes to write at off, or n bytes to copy from src at srcOff.
type writeOp struct {
	off    int64
	b      []byte
	pooled bool // b is the pool's: given back once written

	src       *os.File
	srcMu     *sync.Mutex // held while src is seeked and copied from
	srcOff, n int64
}

func newDataWriter(dataPath string, pool *bufPool) (*dataWriter, error) {
	p, err := CreatePending(dataPath)
	if err != nil {
		return nil, err
	}
	d := &dataWriter{p: p, direct: openDirect(p.Name()), pool: pool, h: sha256.New(),
		ops: make(chan writeOp, 1), done: make(chan struct{}), slots: make(chan struct{}, directQueue)}
	d.heldCh = sync.NewCond(&d.heldMu)
	go d.run()
	return d, nil
}

// failed is the worker's first error (nil while all is well).
func (d *dataWriter) failed() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// fail records err unless an error came first.
func (d *dataWriter) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
}

// next reserves n bytes at the next aligned offset and returns that offset.
func (d *dataWriter) next(n int64) int64 {
	off := (d.off + ExternalAlign - 1) / ExternalAlign * ExternalAlign
	d.off = off + n
	return off
}

// write queues b (the pool's when pooled) and returns the offset it will start at. b must stay
// unchanged until the writer is done with it (a pooled buffer is given back then).
func (d *dataWriter) write(b []byte, pooled bool) (int64, error) {
	if err := d.failed(); err != nil {
		if pooled {
			d.pool.put(b)
		}
		return 0, err
	}
	op := writeOp{off: d.next(int64(len(b))), b: b, pooled: pooled}
	d.ops <- op
	return op.off, nil
}

// copyExternal queues a file-to-file copy of n bytes of external tensor t and returns the
// offset they will start at.
func (m *Model) copyExternal(t *onnxpb.TensorProto, n int64, d *dataWriter) (int64, error) {
	if err := d.failed(); err != nil {
		return 0, err
	}
	r, err := parseExternal(t)
	if err != nil {
		return 0, err
	}
	// The handle m holds (not the path): if the file was replaced since Load, m still copies
	// the bytes it was loaded with, as RawData reads them. Seeking it is safe: reads elsewhere
	// use ReadAt, and copies hold copyMu.
	src, err := m.openExternal(r.location)
	if err != nil {
		return 0, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	if fi, err := src.Stat(); err != nil || r.offset > fi.Size() || n > fi.Size()-r.offset {
		return 0, fmt.Errorf("tensor %q: external data offset %d + length %d runs past the end of %q", t.GetName(), r.offset, n, r.location)
	}
	op := writeOp{off: d.next(n), src: src, srcMu: &m.files().copyMu, srcOff: r.offset, n: n}
	d.ops <- op
	return op.off, nil
}

// run is the worker: it writes the queued tensors in order until the queue is closed, then
// waits for the pieces still in flight. After an error it only gives buffers back.
func (d *dataWriter) run() {
	defer close(d.done)
	defer d.inflight.Wait()
	for op := range d.ops {
		if d.failed() != nil {
			if op.pooled {
				d.pool.put(op.b)
			}
			continue
		}
		if op.src != nil {
			if err := d.copy(op); err != nil {
				d.fail(err)
			}
			continue
		}
		d.put(op)
	}
}

// hold waits until n more bytes of buffers may be in flight (at most directBudget, or any one
// buffer alone) and counts them; release uncounts them.
func (d *dataWriter) hold(n int) {
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	for d.held > 0 && d.held+n > directBudget {
		d.heldCh.Wait()
	}
	d.held += n
}

func (d *dataWriter) release(n int) {
	d.heldMu.Lock()
	d.held -= n
	d.heldMu.Unlock()
	d.heldCh.Broadcast()
}

// put sends op.b to the disk at op.off and sums it into the id while it goes: the whole
// ioAlign blocks of an aligned buffer as direct pieces (in flight when put returns), the rest
// through the page cache. A pooled buffer goes back to the pool once its last piece is written.
func (d *dataWriter) put(op writeOp) {
	var pending sync.WaitGroup
	b, off := op.b, op.off
	if d.direct != nil && !d.buffered.Load() && aligned(b) && off%ioAlign == 0 {
		n := len(b) &^ (ioAlign - 1)
		d.hold(n)
		for i := 0; i < n; i += directChunk {
			piece, at := b[i:min(i+directChunk, n)], off+int64(i)
			d.slots <- struct{}{}
			pending.Add(1)
			d.inflight.Go(func() {
				defer func() { <-d.slots; pending.Done() }()
				d.writePiece(piece, at)
			})
		}
		d.inflight.Go(func() {
			pending.Wait()
			d.release(n)
		})
		b, off = b[n:], off+int64(n)
	}
	d.sum(op.b)
	if len(b) > 0 {
		if _, err := d.p.WriteAt(b, off); err != nil {
			d.fail(err)
		}
	}
	if op.pooled {
		d.inflight.Go(func() {
			pending.Wait()
			d.pool.put(op.b)
		})
	}
}

// writePiece writes one piece by direct I/O; a file system that refuses it (EINVAL) gets it,
// and every later write, through the page cache.
func (d *dataWriter) writePiece(b []byte, off int64) {
	if !d.buffered.Load() {
		_, err := d.direct.WriteAt(b, off)
		if !errors.Is(err, syscall.EINVAL) {
			if err != nil {
				d.fail(err)
			}
			return
		}
		d.buffered.Store(true)
	}
	if _, err := d.p.WriteAt(b, off); err != nil {
		d.fail(err)
	}
}

// idChunk is the span of bytes each CRC in a data file's id covers.
const idChunk = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sum adds a written tensor to the id: its length, then the CRC-32C of each idChunk of its
// bytes (the id is the sha256 of that stream). CRC-32C runs at memory speed with the CPU's
// CRC instruction, ten times the speed of sha256 over the bytes themselves, and it is as good
// at what the id is for: telling apart the data files of two saves of one model (any change
// within a chunk of up to 32 bits is always caught, any other is missed with odds 2⁻³² per
// changed chunk); it guards against accidents, not against an adversary.
func (d *dataWriter) sum(b []byte) {
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], uint64(len(b)))
	d.h.Write(w[:])
	for off := 0; off < len(b); off += idChunk {
		binary.LittleEndian.PutUint32(w[:4], crc32.Checksum(b[off:min(off+idChunk, len(b))], castagnoli))
		d.h.Write(w[:4])
	}
}

// directChunk is the size of the pieces direct writes are split into, and directQueue how
// many are in flight at once: a virtual disk needs a deep queue to reach its throughput (2.2 GB
// written as 8 MiB pieces took 2.0 s with 4 in flight, 1.4-1.6 s with 16). directBudget bounds
// the bytes of the buffers those pieces belong to (a buffer is held until its last piece is
// written), so that many small tensors in flight cannot add up to a large peak RSS.
// (Variables so that a test can shrink them.)
var (
	directChunk  = 8 << 20
	directQueue  = 16
	directBudget = 128 << 20
)

// copy copies op.n bytes of op.src to op.off by the kernel (copy_file_range where the file
// systems allow it), without a trip through a Go buffer.
func (d *dataWriter) copy(op writeOp) error {
	op.srcMu.Lock() // one seek-and-copy at a time on the shared handle
	defer op.srcMu.Unlock()
	// The bytes are not read here, so the id covers where they come from instead: the source
	// file's own id when it has one, else its name, size and modification time.
	srcID, _ := dataIDOf(op.src)
	if srcID == "" {
		if fi, err := op.src.Stat(); err == nil {
			srcID = fmt.Sprintf("%s %d %d", op.src.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	fmt.Fprintf(d.h, "copy %s %d %d\n", srcID, op.srcOff, op.n)
	if _, err := op.src.Seek(op.srcOff, io.SeekStart); err != nil {
		return err
	}
	if _, err := d.p.Seek(op.off, io.SeekStart); err != nil {
		return err
	}
	copied, err := d.p.ReadFrom(&io.LimitedReader{R: op.src, N: op.n})
	if err != nil {
		return err
	}
	if copied != op.n {
		return fmt.Errorf("copied %d of %d bytes from %s", copied, op.n, op.src.Name())
	}
	return nil
}

// wait closes the queue and waits until everything queued is written; it returns the first
// error. Safe to call more than once.
func (d *dataWriter) wait() error {
	if !d.closed {
		d.closed = true
		close(d.ops)
	}
	<-d.done
	return d.failed()
}

// id is the data file's content id: a hash of the tensors written (see sum) and of the
// sources of those copied. Valid after wait.
func (d *dataWriter) id() string { return hex.EncodeToString(d.h.Sum(nil)[:16]) }

// finish waits for the queue, appends the id trailer and syncs the file.
func (d *dataWriter) finish() error {
	if err := d.wait(); err != nil {
		return err
	}
	if _, err := d.p.WriteAt([]byte(dataIDMagic+d.id()+"\n"), d.off); err != nil {
		return err
	}
	if d.direct != nil {
		d.direct.Close()
		d.direct = nil
	}
	return d.p.finish()
}

// abort stops the worker and removes the temporary file (a no-op after rename).
func (d *dataWriter) abort() {
	d.wait()
	if d.direct != nil {
		d.direct.Close()
		d.direct = nil
	}
	d.p.Abort()
}
