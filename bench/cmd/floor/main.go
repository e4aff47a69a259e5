// Command floor is the syscall floor of a fan-out: it accepts WebSocket handshakes
// minimally, then writes each message (a pre-encoded frame) to every subscribed socket
// with plain write(2), one locked thread per core, and nothing else: no queues per
// connection, no reads after the upgrade, a frame that does not fit is dropped.
//
// --frames-per-write K coalesces up to K messages already waiting into one write (never
// waits for more), the "ten frames per write" variant. Messages come from Redis
// (PSUBSCRIBE crease:*), or with --self-count from the process itself once --expect
// connections are up. On SIGTERM it prints its own getrusage figures as JSON.
package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/rueidis"
	"golang.org/x/sys/unix"
)

type msg struct {
	match string
	frame []byte // a complete server frame
}

type shard struct {
	mu    sync.Mutex
	subs  map[string][]int // match -> fds
	in    chan msg
	conns atomic.Int64
}

var (
	delivered, writes, dropped, dead atomic.Int64
	accepted                         atomic.Int64
	fpw                              int
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	redisAddr := flag.String("redis", "", "Redis address (empty: no Redis)")
	prefix := flag.String("prefix", "crease", "Redis key prefix")
	flag.IntVar(&fpw, "frames-per-write", 1, "coalesce up to this many waiting messages into one write")
	threads := flag.Int("threads", runtime.GOMAXPROCS(0), "writer threads")
	selfCount := flag.Int("self-count", 0, "publish this many messages itself (to match m0) once --expect connections are up")
	expect := flag.Int64("expect", 0, "connections to wait for in --self-count mode")
	flag.Parse()

	shards := make([]*shard, *threads)
	for i := range shards {
		shards[i] = &shard{subs: map[string][]int{}, in: make(chan msg, 8192)}
		go shards[i].run()
	}
	lfd := listen(*addr)
	var next atomic.Uint64
	for i := 0; i < 4; i++ {
		go acceptLoop(lfd, func(fd int, match string) {
			s := shards[next.Add(1)%uint64(len(shards))]
			s.mu.Lock()
			s.subs[match] = append(s.subs[match], fd)
			s.mu.Unlock()
			s.conns.Add(1)
		})
	}
	broadcast := func(m msg) {
		for _, s := range shards {
			s.in <- m
		}
	}
	if *redisAddr != "" {
		go subscribe(*redisAddr, *prefix, broadcast)
	}
	fmt.Fprintf(os.Stderr, "floor: pid %d listening on %s, %d threads, %d frames per write\n", os.Getpid(), *addr, *threads, fpw)
	var selfStart time.Time
	var selfCPU float64
	if *selfCount > 0 {
		for accepted.Load() < *expect {
			time.Sleep(10 * time.Millisecond)
		}
		selfCPU = cpuSeconds()
		selfStart = time.Now()
		for i := 1; i <= *selfCount; i++ {
			payload := fmt.Sprintf(`{"type":"delta","match":"m0","epoch":"bench","seq":%d,"prio":"normal","ts":%d,"patch":{"score":{"runs":187,"wickets":4},"over":"14.3","striker":{"name":"A. Batter","runs":57},"last":"1"}}`, i, time.Now().UnixMicro())
			broadcast(msg{match: "m0", frame: textFrame([]byte(payload))})
		}
		want := int64(*selfCount) * *expect
		for delivered.Load()+dropped.Load() < want {
			time.Sleep(time.Millisecond)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if *selfCount == 0 {
		<-sig
	}
	cpu := cpuSeconds()
	out := map[string]any{"accepted": accepted.Load(), "delivered": delivered.Load(), "writes": writes.Load(),
		"dropped": dropped.Load(), "dead": dead.Load(), "cpu_s": cpu, "frames_per_write": fpw}
	if *selfCount > 0 {
		el := time.Since(selfStart).Seconds()
		out["self_elapsed_s"] = el
		out["self_cpu_s"] = cpu - selfCPU
		out["self_cpu_us_per_delivery"] = (cpu - selfCPU) * 1e6 / float64(max(delivered.Load(), 1))
		out["self_delivered_per_s"] = float64(delivered.Load()) / el
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}

func cpuSeconds() float64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func listen(addr string) int {
	ta, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		die("addr: %v", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		die("socket: %v", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	var ip [4]byte
	copy(ip[:], ta.IP.To4())
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: ta.Port, Addr: ip}); err != nil {
		die("bind: %v", err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		die("listen: %v", err)
	}
	return fd
}

func die(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "floor: "+f+"\n", a...)
	os.Exit(1)
}

// acceptLoop blocks its thread in accept(2) and does each handshake synchronously: the
// floor measures the fan-out, not the accept path.
func acceptLoop(lfd int, add func(fd int, match string)) {
	buf := make([]byte, 8192)
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			if err == unix.EMFILE || err == unix.ENFILE {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 5})
		match, key, ok := readRequest(fd, buf)
		if !ok {
			unix.Close(fd)
			continue
		}
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n"
		out := append([]byte(resp), textFrame([]byte(`{"type":"hello","node":"floor","heartbeat_s":0}`))...)
		out = append(out, textFrame([]byte(`{"type":"subscribed","match":"`+match+`"}`))...)
		if _, err := unix.Write(fd, out); err != nil {
			unix.Close(fd)
			continue
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			continue
		}
		accepted.Add(1)
		add(fd, match)
	}
}

func readRequest(fd int, buf []byte) (match, key string, ok bool) {
	n := 0
	for {
		if n == len(buf) {
			return "", "", false
		}
		r, err := unix.Read(fd, buf[n:])
		if r <= 0 || err != nil {
			return "", "", false
		}
		n += r
		if bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			break
		}
	}
	req := string(buf[:n])
	line, rest, _ := strings.Cut(req, "\r\n")
	parts := strings.Fields(line)
	if len(parts) < 2 {
		return "", "", false
	}
	if u, err := url.Parse(parts[1]); err == nil {
		match = u.Query().Get("match")
	}
	for _, h := range strings.Split(rest, "\r\n") {
		k, v, _ := strings.Cut(h, ":")
		if strings.EqualFold(strings.TrimSpace(k), "Sec-WebSocket-Key") {
			key = strings.TrimSpace(v)
		}
	}
	return match, key, match != "" && key != ""
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// textFrame encodes an unmasked server text frame.
func textFrame(p []byte) []byte {
	var h []byte
	switch n := len(p); {
	case n < 126:
		h = []byte{0x81, byte(n)}
	case n < 1<<16:
		h = []byte{0x81, 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{0x81, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(h, p...)
}

func subscribe(addr, prefix string, broadcast func(msg)) {
	cl, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		die("redis: %v", err)
	}
	pre := prefix + ":{"
	for {
		err := cl.Receive(context.Background(), cl.B().Psubscribe().Pattern(prefix+":*").Build(), func(m rueidis.PubSubMessage) {
			match := strings.TrimSuffix(strings.TrimPrefix(m.Channel, pre), "}")
			broadcast(msg{match: match, frame: textFrame([]byte(m.Message))})
		})
		fmt.Fprintf(os.Stderr, "floor: redis: %v\n", err)
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *shard) run() {
	runtime.LockOSThread()
	batch := make([]msg, 0, fpw)
	bufs := map[string][]byte{}
	var fds []int
	for m := range s.in {
		batch = append(batch[:0], m)
	fill:
		for len(batch) < fpw {
			select {
			case m2 := <-s.in:
				batch = append(batch, m2)
			default:
				break fill
			}
		}
		clear(bufs)
		var order []string
		for _, b := range batch {
			if _, ok := bufs[b.match]; !ok {
				order = append(order, b.match)
			}
			bufs[b.match] = append(bufs[b.match], b.frame...)
		}
		for _, match := range order {
			buf := bufs[match]
			nframes := int64(0)
			for _, b := range batch {
				if b.match == match {
					nframes++
				}
			}
			s.mu.Lock()
			fds = append(fds[:0], s.subs[match]...)
			s.mu.Unlock()
			var gone []int
			for _, fd := range fds {
				n, err := unix.Write(fd, buf)
				writes.Add(1)
				switch {
				case err == nil && n == len(buf):
					delivered.Add(nframes)
				case err == unix.EAGAIN || err == nil:
					// A short write would corrupt the stream for this client; the floor
					// only counts it (a real server queues the rest).
					dropped.Add(nframes)
				default:
					gone = append(gone, fd)
				}
			}
			if len(gone) > 0 {
				s.remove(match, gone)
			}
		}
	}
}

func (s *shard) remove(match string, gone []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.subs[match]
	for _, fd := range gone {
		for i, f := range list {
			if f == fd {
				list[i] = list[len(list)-1]
				list = list[:len(list)-1]
				break
			}
		}
		unix.Close(fd)
		dead.Add(1)
		s.conns.Add(-1)
	}
	s.subs[match] = list
}
