package fhir

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeBigBundle streams a Bundle of n entries (a Patient then nine Observations with an
// 8 KiB note each, per patient) without holding it in memory.
func writeBigBundle(w io.Writer, n int) error {
	bw := bufio.NewWriter(w)
	note := strings.Repeat("free text that may name the patient ", 8192/36)
	fmt.Fprint(bw, `{"resourceType":"Bundle","type":"collection","entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			bw.WriteByte(',')
		}
		pid := fmt.Sprintf("p%06d", i/10)
		if i%10 == 0 {
			fmt.Fprintf(bw, `{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Patient","id":"%s","name":[{"family":"Bulk%d"}],"birthDate":"1960-01-%02d"}}`, pid, pid, i, 1+i%28)
			continue
		}
		fmt.Fprintf(bw, `{"fullUrl":"urn:uuid:o%07d","resource":{"resourceType":"Observation","id":"o%07d","status":"final","code":{"text":"glucose"},"subject":{"reference":"urn:uuid:%s"},"effectiveDateTime":"2015-03-04T05:06:07Z","valueQuantity":{"value":5.4,"unit":"mmol/L"},"note":[{"text":%q}]}}`, i, i, pid, note)
	}
	fmt.Fprint(bw, `]}`)
	return bw.Flush()
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestLargeBundleStreamsInBoundedMemory de-identifies a 10,000-entry Bundle (about 75 MB)
// read from a pipe, and checks that the heap never holds more than a bound far below the
// Bundle's size: entries are processed ChunkSize at a time.
func TestLargeBundleStreamsInBoundedMemory(t *testing.T) {
	const entries = 10000
	p, _, _ := newTestProcessor(t, preset(t, PresetSafeHarbor))
	pr, pw := io.Pipe()
	in := &countWriter{}
	go func() { pw.CloseWithError(writeBigBundle(io.MultiWriter(pw, in), entries)) }()

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	out := &countWriter{}
	rep, err := p.DeidentifyJSON(context.Background(), pr, out)
	close(done)
	wg.Wait()
	require.NoError(t, err)
	assert.Equal(t, entries, rep.Resources)
	assert.Empty(t, rep.Errors)
	assert.Greater(t, in.n, int64(64<<20), "the input is large")
	used := peak - min(peak, base.HeapAlloc)
	t.Logf("input %d MiB, output %d KiB, peak heap above start %d MiB", in.n>>20, out.n>>10, used>>20)
	assert.Less(t, used, uint64(32<<20), "heap stays bounded while streaming")
}

func TestStreamingKeepsBundleShape(t *testing.T) {
	p, _, _ := newTestProcessor(t, preset(t, PresetLimitedDataSet))
	in := `{"entry":[{"fullUrl":"urn:uuid:aaaaaaaa-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","id":"aaaaaaaa-0000-4000-8000-000000000001"}}],
	  "resourceType":"Bundle","id":"b1","type":"searchset","total":1,"link":[{"relation":"self","url":"http://x/Patient?name=Secretname"}]}`
	var out strings.Builder
	_, err := p.DeidentifyJSON(context.Background(), strings.NewReader(in), &out)
	require.NoError(t, err)
	got := decodeJSON(t, []byte(out.String()))
	assert.Equal(t, "Bundle", got["resourceType"], "resourceType after entry is fine")
	assert.NotContains(t, got, "id", "the Bundle's own id is the source's: dropped")
	assert.NotContains(t, got, "link", "paging links can carry search parameters")
	assert.Len(t, got["entry"], 1)
	out.Reset()
	_, err = p.DeidentifyJSON(context.Background(), strings.NewReader(`{"resourceType":"Bundle","type":"collection"}`), &out)
	require.NoError(t, err)
	assert.JSONEq(t, `{"resourceType":"Bundle","type":"collection"}`, out.String())
}
