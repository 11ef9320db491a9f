package pullapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FollowOptions configure Follow.
type FollowOptions struct {
	URL   string // the API's base URL, e.g. http://127.0.0.1:8080
	Token string
	// Position to start from when PositionFile holds none (or always,
	// with Override): tail, top or a position token. Default tail.
	Position string
	Override bool
	// PositionFile, if set, is read at start and written after each page
	// has been printed: a restart resumes where the last one stopped, and
	// at worst prints the last page again (at least once).
	PositionFile string
	Limit        int  // page size, default 100
	UntilTop     bool // return once the stream's head is reached
	Out          io.Writer
	Log          *slog.Logger
	HTTP         *http.Client
}

// Follow pulls pages and prints each event as one line of JSON until ctx
// ends (or the head, with UntilTop). Network errors, 429 and 5xx are
// retried with backoff; any other refusal ends it with the server's
// message.
func Follow(ctx context.Context, o FollowOptions) error {
	if o.Limit == 0 {
		o.Limit = DefaultLimit
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	pos := o.Position
	if o.PositionFile != "" && !(o.Override && pos != "") {
		b, err := os.ReadFile(o.PositionFile)
		switch {
		case err == nil && strings.TrimSpace(string(b)) != "":
			pos = strings.TrimSpace(string(b))
		case err != nil && !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("read position file: %w", err)
		}
	}
	if pos == "" {
		pos = "tail"
	}
	out := bufio.NewWriter(o.Out)
	backoff := 250 * time.Millisecond
	for {
		p, err := getPage(ctx, o, pos)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errPageTooLarge) {
			// Not temporary: the same request gets the same answer.
			// Ask for fewer events, down to one.
			if o.Limit == 1 {
				return fmt.Errorf("position %s: one event is larger than this client reads (%d bytes)", pos, MaxPageBody)
			}
			o.Limit = max(o.Limit/2, 1)
			o.Log.Warn("page too large; asking for fewer events", "limit", o.Limit)
			continue
		}
		var te *temporaryError
		if errors.As(err, &te) {
			wait := backoff/2 + rand.N(backoff)
			o.Log.Warn("pull failed; retrying the same position", "err", err, "in", wait.Round(time.Millisecond))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		if err != nil {
			return err
		}
		backoff = 250 * time.Millisecond
		for _, it := range p.Items {
			out.Write(it.Data)
			out.WriteByte('\n')
		}
		if err := out.Flush(); err != nil {
			return err
		}
		pos = p.Meta.Position
		if o.PositionFile != "" {
			if err := savePosition(o.PositionFile, pos); err != nil {
				return err
			}
		}
		if o.UntilTop && p.Meta.Top {
			return nil
		}
	}
}

// Page is the body of a 200 answer, each item's data kept as it came.
type Page = PageOf[json.RawMessage]

// PageOf is the body of a 200 answer with each item's data decoded as D.
type PageOf[D any] struct {
	Items []struct {
		Data D `json:"data"`
		Meta struct {
			EventType  string `json:"event_type"`
			ResourceID string `json:"resource_id"`
			Sequence   int64  `json:"sequence"`
		} `json:"meta"`
	} `json:"items"`
	Meta struct {
		Position string `json:"position"`
		Top      bool   `json:"top"`
		Count    int    `json:"count"`
	} `json:"meta"`
}

// errPageTooLarge is an answer over MaxPageBody, which no server of this
// version sends; an older or other server might.
var errPageTooLarge = errors.New("page larger than the client reads")

type temporaryError struct{ err error }

func (e *temporaryError) Error() string { return e.err.Error() }

func getPage(ctx context.Context, o FollowOptions, pos string) (*Page, error) {
	p, err := GetPage(ctx, o.HTTP, o.URL, o.Token, pos, o.Limit)
	var se *StatusError
	if errors.As(err, &se) && se.Code == http.StatusGone && o.PositionFile != "" {
		err = fmt.Errorf("%w (delete %s or pass --position tail to start over)", err, o.PositionFile)
	}
	return p, err
}

// StatusError is an answer other than 200, with the server's message.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Msg)
}

// GetPage asks the API at baseURL for one page of at most limit events
// (0: the server's default) from pos (tail, top, or an earlier page's
// Meta.Position). A network error, 429 and 5xx are temporary (Follow
// retries them); other refusals are a *StatusError.
func GetPage(ctx context.Context, hc *http.Client, baseURL, token, pos string, limit int) (*Page, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	u := strings.TrimRight(baseURL, "/") + "/v1/stream?position=" + url.QueryEscape(pos)
	if limit > 0 {
		u += "&limit=" + strconv.Itoa(limit)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, &temporaryError{err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPageBody+1))
	if err != nil {
		return nil, &temporaryError{err}
	}
	if len(body) > MaxPageBody {
		return nil, errPageTooLarge
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Code + ": " + e.Error.Message
		}
		err := &StatusError{Code: resp.StatusCode, Msg: msg}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return nil, &temporaryError{err}
		}
		return nil, err
	}
	var p Page
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, &temporaryError{fmt.Errorf("answer is not a page: %w", err)}
	}
	return &p, nil
}

// savePosition replaces the file atomically, so a crash leaves the old
// position or the new one, never half of one.
func savePosition(path, pos string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(pos + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("save position: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save position: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save position: %w", err)
	}
	return nil
}
