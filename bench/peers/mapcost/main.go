// Command mapcost measures what Ferry's log reads pay on this machine for
// the first touch of a page of the commit log through its read-only shared
// mapping, against reading the same bytes with pread:
//
//	go run ./mapcost --dir /var/tmp --mode map
//
// It writes a fallocated file in chunks with pwrite, as the committer
// does, and after each chunk reads the first bytes of every record in it,
// as the dispatcher does, one of three ways: through the mapping, where
// each new page is a page-table entry made on first touch (map);
// madvise(MADV_POPULATE_READ) over the chunk first, then through the
// mapping (populate); or one pread of the whole chunk into a buffer
// reused (pread). --hugepage asks for large pages on the mapping
// (MADV_HUGEPAGE), and prints how much of the page cache /proc/meminfo
// then says is mapped with them (FileHugePages).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory of the file written (on the disk the log would be on)")
	size := flag.Int64("size", 512<<20, "file bytes")
	chunk := flag.Int("chunk", 256<<10, "bytes a pwrite writes")
	record := flag.Int("record", 4096+200, "bytes a record takes")
	mode := flag.String("mode", "map", "map, populate or pread")
	huge := flag.Bool("hugepage", false, "madvise(MADV_HUGEPAGE) on the mapping first")
	flag.Parse()
	if err := run(*dir, *size, *chunk, *record, *mode, *huge); err != nil {
		log.Fatal(err)
	}
}

// sink keeps the header reads from being optimised away.
var sink uint32

func run(dir string, size int64, chunk, record int, mode string, huge bool) error {
	path := filepath.Join(dir, fmt.Sprintf("mapcost-%d", os.Getpid()))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	defer unix.Munmap(data)
	if huge {
		if err := unix.Madvise(data, unix.MADV_HUGEPAGE); err != nil {
			return fmt.Errorf("madvise(MADV_HUGEPAGE): %w", err)
		}
	}
	w := make([]byte, chunk)
	for i := range w {
		w[i] = byte(i)
	}
	r := make([]byte, chunk)
	var wrote, read time.Duration
	n := 0
	for off := 0; off+chunk <= int(size); off += chunk {
		t0 := time.Now()
		if _, err := f.WriteAt(w, int64(off)); err != nil {
			return err
		}
		t1 := time.Now()
		src := data[off : off+chunk]
		switch mode {
		case "map":
		case "populate":
			if err := unix.Madvise(src, unix.MADV_POPULATE_READ); err != nil {
				return fmt.Errorf("madvise: %w", err)
			}
		case "pread":
			if _, err := f.ReadAt(r, int64(off)); err != nil {
				return err
			}
			src = r
		default:
			return fmt.Errorf("mode %q: want map, populate or pread", mode)
		}
		for p := 0; p+8 <= chunk; p += record {
			sink += binary.BigEndian.Uint32(src[p+4:])
			n++
		}
		wrote += t1.Sub(t0)
		read += time.Since(t1)
	}
	fmt.Printf("%s: %d records of %d bytes: pwrite %.0f ns a record, reading its header %.0f ns\n",
		mode, n, record, float64(wrote)/float64(n), float64(read)/float64(n))
	if huge {
		meminfo, err := os.ReadFile("/proc/meminfo")
		if err != nil {
			return err
		}
		for _, l := range strings.Split(string(meminfo), "\n") {
			if strings.HasPrefix(l, "FileHugePages:") {
				fmt.Println(strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return nil
}
