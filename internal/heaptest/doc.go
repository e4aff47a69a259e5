// Package heaptest measures a test process's Go heap the same way everywhere: the live
// heap after collection (LiveHeap), for the per-connection figures of crease and of the
// bare gnet baseline; the peak of the heap objects while something runs (WatchHeap),
// for the memory bounds of the fault and backpressure suites; and clients made of raw
// sockets (RawClient), which cost the Go heap nothing, so that what grows is the
// server's alone.
//
// It is for tests and benchmarks only. WatchHeap's sampler is the one goroutine it
// starts; everything else runs on the caller's.
package heaptest
