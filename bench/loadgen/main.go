// An open-loop load generator: calls are scheduled at a fixed average rate
// with exponential gaps (Poisson), whatever the server's speed, and each
// latency is measured from the call's scheduled time when the connection was
// still busy with the previous call, so queueing is not hidden (no
// coordinated omission). wrk's Lua pacing counts whole milliseconds and
// fires its connections in step, which measures its own bursts instead.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	target := flag.String("url", "", "URL to GET (http only)")
	rate := flag.Float64("rate", 1000, "calls per second")
	duration := flag.Duration("duration", 8*time.Second, "how long to send")
	conns := flag.Int("conns", 64, "keep-alive connections")
	var extra headers
	flag.Var(&extra, "H", "header 'Name: value' (repeatable)")
	flag.Parse()

	// Raw HTTP/1.1 over keep-alive sockets: net/http's client costs more CPU than the servers measured.
	parsed, err := url.Parse(*target)
	if err != nil {
		panic(err)
	}
	request := "GET " + parsed.RequestURI() + " HTTP/1.1\r\nHost: " + parsed.Host + "\r\n"
	for _, h := range extra {
		request += h + "\r\n"
	}
	request += "\r\n"
	// Each connection has its own Poisson stream of rate/conns calls per second.
	start := time.Now()
	var mu sync.Mutex
	var latencies []time.Duration
	failures := 0
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			conn, err := net.Dial("tcp", parsed.Host)
			if err != nil {
				panic(err)
			}
			reader := bufio.NewReader(conn)
			random := rand.New(rand.NewSource(seed))
			own := make([]time.Duration, 0, int(*rate*duration.Seconds()/float64(*conns)*1.2))
			bad := 0
			for scheduled := start; ; {
				scheduled = scheduled.Add(time.Duration(random.ExpFloat64() * float64(*conns) / *rate * float64(time.Second)))
				if scheduled.Sub(start) >= *duration {
					break
				}
				// Late because the previous call was slow: the wait counts. Late because the
				// timer woke up late (epoll waits in whole milliseconds): it does not.
				begin := scheduled
				if time.Now().Before(scheduled) {
					time.Sleep(time.Until(scheduled))
					begin = time.Now()
				}
				if !roundTrip(conn, reader, request) {
					bad++
				}
				own = append(own, time.Since(begin))
			}
			mu.Lock()
			latencies = append(latencies, own...)
			failures += bad
			mu.Unlock()
		}(int64(i))
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	at := func(q float64) float64 { return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000 }
	fmt.Printf("rate %.0f/s calls %d failures %d p50 %.3fms p99 %.3fms p999 %.3fms max %.3fms\n",
		float64(len(latencies))/elapsed, len(latencies), failures, at(0.5), at(0.99), at(0.999), at(1))
	if failures > 0 {
		os.Exit(1)
	}
}

// roundTrip sends one request and reads its response; true on a 200.
func roundTrip(conn net.Conn, reader *bufio.Reader, request string) bool {
	if _, err := io.WriteString(conn, request); err != nil {
		return false
	}
	status, err := reader.ReadString('\n')
	if err != nil {
		return false
	}
	length := 0
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			return false
		}
		if line == "\r\n" {
			break
		}
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(name, "content-length") {
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		}
	}
	if _, err := reader.Discard(length); err != nil {
		return false
	}
	return strings.HasPrefix(status, "HTTP/1.1 200")
}
