// Package ingest produces events to the raw topic: NDJSON lines from files
// or stdin, or generated events. Each event is validated first and keyed by
// its resource_id, so a producer hears about a bad line at once, with its
// line number, instead of finding it in the DLQ later.
package ingest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/testsupport/generator"
)

// Options configure a Producer.
type Options struct {
	Topic string
	// Codec is the raw topic's encoding. JSON lines are sent as they
	// came; for Avro they are re-encoded.
	Codec         schemas.Codec
	MaxEventBytes int
	// Strict stops at the first rejected line instead of skipping it.
	Strict bool
	// OnReject is told of every rejected line.
	OnReject func(Rejection)
}

// Rejection is one line that was not sent.
type Rejection struct {
	Source string
	Line   int
	Err    error
}

func (r Rejection) Error() string { return fmt.Sprintf("%s:%d: %v", r.Source, r.Line, r.Err) }

// Progress is updated as lines are read and acknowledged; safe to read
// concurrently (a progress bar does).
type Progress struct {
	Read, Sent, Rejected, Failed, Bytes atomic.Int64
}

// Producer sends events with one client.
type Producer struct {
	cl       *kgo.Client
	o        Options
	Progress Progress
	firstErr atomic.Pointer[error]
}

// New returns a producer over cl, which must be configured for acks=all
// and idempotence (kgo's defaults).
func New(cl *kgo.Client, o Options) *Producer {
	if o.Codec == nil {
		o.Codec = schemas.JSON{}
	}
	return &Producer{cl: cl, o: o}
}

// ErrStrict is returned when Options.Strict stops at a rejected line.
var ErrStrict = errors.New("stopped at the first rejected line (--strict)")

// Lines sends every line of r. Blank lines are skipped.
func (p *Producer) Lines(ctx context.Context, r io.Reader, source string) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for line := 1; ; line++ {
		data, tooLong, err := readLine(br, p.o.MaxEventBytes)
		p.Progress.Bytes.Add(int64(len(data)) + 1)
		if tooLong || len(bytes.TrimSpace(data)) > 0 {
			p.Progress.Read.Add(1)
			var sendErr error
			if tooLong {
				sendErr = p.reject(fmt.Errorf("event is over the limit of %d bytes (processor.max_event_bytes)", p.o.MaxEventBytes), source, line)
			} else {
				sendErr = p.send(ctx, data, source, line)
			}
			if sendErr != nil {
				return sendErr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", source, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Generate sends n events from a seeded generator over the given number of
// resources.
func (p *Producer) Generate(ctx context.Context, n int, seed uint64, resources int) error {
	g := generator.New(seed, resources)
	for i := range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		data := g.JSON()
		p.Progress.Read.Add(1)
		p.Progress.Bytes.Add(int64(len(data)))
		if err := p.send(ctx, data, "generator", i+1); err != nil {
			return err
		}
	}
	return nil
}

// readLine returns the next line without its line ending. A line over
// limit bytes is consumed whole and reported as tooLong, without its data.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if limit > 0 && len(line)+len(chunk) > limit+2 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		return line, tooLong, err
	}
}

func (p *Producer) reject(err error, source string, line int) error {
	p.Progress.Rejected.Add(1)
	if p.o.OnReject != nil {
		p.o.OnReject(Rejection{Source: source, Line: line, Err: err})
	}
	if p.o.Strict {
		return fmt.Errorf("%s:%d: %w: %w", source, line, ErrStrict, err)
	}
	return nil
}

func (p *Producer) send(ctx context.Context, data []byte, source string, line int) error {
	reject := func(err error) error { return p.reject(err, source, line) }
	e, err := schemas.JSON{}.Decode(data)
	if err != nil {
		return reject(err)
	}
	value := append([]byte(nil), data...)
	if _, isJSON := p.o.Codec.(schemas.JSON); !isJSON {
		if value, err = p.o.Codec.Append(nil, e); err != nil {
			return reject(err)
		}
	}
	rec := &kgo.Record{Topic: p.o.Topic, Key: []byte(e.ResourceID), Value: value}
	p.cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
		if err != nil {
			p.Progress.Failed.Add(1)
			p.firstErr.CompareAndSwap(nil, &err)
			return
		}
		p.Progress.Sent.Add(1)
	})
	return nil
}

// Finish waits for every produced record to be acknowledged and returns
// the first produce error, if any.
func (p *Producer) Finish(ctx context.Context) error {
	if err := p.cl.Flush(ctx); err != nil {
		return err
	}
	if e := p.firstErr.Load(); e != nil {
		return fmt.Errorf("%d events were not acknowledged; first error: %w", p.Progress.Failed.Load(), *e)
	}
	return nil
}

// ProgressLine renders one line of progress; total is the input size in
// bytes, or 0 when unknown.
func (p *Producer) ProgressLine(start time.Time, total int64) string {
	sent := p.Progress.Sent.Load()
	rate := float64(sent) / max(time.Since(start).Seconds(), 0.001)
	s := fmt.Sprintf("%d sent, %d rejected, %.0f events/s", sent, p.Progress.Rejected.Load(), rate)
	if total > 0 {
		frac := min(float64(p.Progress.Bytes.Load())/float64(total), 1)
		const width = 30
		fill := int(frac * width)
		s = fmt.Sprintf("[%s%s] %3.0f%% %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, s)
	}
	return s
}
