package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServerSample is what the service's admin port says of its process at one moment.
type ServerSample struct {
	CPUSeconds float64 // process_cpu_seconds_total
	RSSBytes   float64 // process_resident_memory_bytes
}

// SampleServer reads the process metrics of the service from its admin port's /metrics
// (addr is host:port).
func SampleServer(ctx context.Context, addr string) (ServerSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return ServerSample{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ServerSample{}, fmt.Errorf("server metrics: %w", err)
	}
	defer resp.Body.Close()
	var s ServerSample
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "process_cpu_seconds_total":
			dst = &s.CPUSeconds
		case "process_resident_memory_bytes":
			dst = &s.RSSBytes
		default:
			continue
		}
		if *dst, err = strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			found++
		}
	}
	if found != 2 {
		return s, fmt.Errorf("server metrics: process_cpu_seconds_total and process_resident_memory_bytes not found at %s", addr)
	}
	return s, sc.Err()
}
