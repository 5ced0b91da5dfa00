package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// Admin is what operators do with dead letters: list, inspect, replay, purge.
//
// Reading goes straight to the DLQ stream (an ordered consumer for listings,
// a get by sequence for one message); nothing about dead letters is copied
// into PostgreSQL except what operators did to them (ops.dlq_audit).
//
// # Replay
//
// A replay publishes the dead message again to its original subject, with
// its original payload and headers minus the Paypipe-Dlq-* and Nats-*
// headers, a new Nats-Msg-Id (UUIDv7) and paypipe-original-msg-id = ce-id.
// The new Nats-Msg-Id is what gets it past JetStream's duplicate window: with
// the original one, a replay inside the window is acknowledged as a duplicate
// and silently dropped. ce-id is unchanged, and every inbox is keyed by it, so
// each consumer of the subject that already applied the message skips it, and
// only the consumer whose handler rolled back applies it, once.
//
// Each replay waits for its PubAck and then appends an audit row, which is
// also the "replayed" mark: a second replay of the entry needs Force. The
// order is deliberate. Audit first could mark as replayed a message that was
// never republished, hiding a dead letter; publish first has the opposite,
// harmless window: if the process dies or the audit write fails after the
// PubAck, the entry is not marked and a later replay republishes it, which the
// inboxes turn into a no-op. The same holds for Purge (delete, then audit; a
// failed audit write leaves a deleted message without its record, and the
// error says so).
//
// Replays and purges hold a PostgreSQL advisory lock for their duration, so
// two operators cannot both find an entry unreplayed and replay it. They are
// rate-limited (ReplayOptions.Rate) so a large replay does not swamp the
// consumers it feeds. Dry runs publish nothing and write nothing, not even an
// audit row: the audit records what happened to messages, and a dry run
// happens to none.
type Admin struct {
	js     jetstream.JetStream
	pool   *pgxpool.Pool
	stream string
}

// NewAdmin returns an Admin of the DLQ stream (contracts.StreamDLQ) that
// audits into pool's ops schema (Schema must be migrated).
func NewAdmin(js jetstream.JetStream, pool *pgxpool.Pool) *Admin {
	return &Admin{js: js, pool: pool, stream: contracts.StreamDLQ}
}

// Errors. Each is wrapped with the sequence or detail it concerns; test with
// errors.Is.
var (
	// ErrNotFound reads "no DLQ message with sequence N" once wrapped.
	ErrNotFound        = errors.New("no DLQ message")
	ErrAlreadyReplayed = errors.New("dlq: already replayed")
	ErrNoMessageID     = errors.New("dlq: message has no ce-id")
	ErrNoSubject       = errors.New("dlq: original subject unknown")
	ErrInvalidFilter   = errors.New("dlq: invalid filter")
)

// Limits.
const (
	// DefaultLimit is how many entries List returns when asked for 0.
	DefaultLimit = 1000
	// MaxLimit bounds any one listing, replay or purge.
	MaxLimit = 100_000
	// fetchBatch is how many messages one pull asks for while listing.
	fetchBatch = 500
	// natsTimeout bounds every call to JetStream.
	natsTimeout = 10 * time.Second
)

// Entry is one dead message as stored in the DLQ stream, decoded from the
// headers the dead-lettering consumer set (headers.go), plus what the audit
// knows about its replays.
type Entry struct {
	// Seq is the message's sequence in the DLQ stream: its handle for show,
	// replay and purge.
	Seq      uint64    `json:"dlq_seq"`
	Subject  string    `json:"dlq_subject"`
	StoredAt time.Time `json:"stored_at"`
	Consumer string    `json:"consumer"`
	// Where the message was when the consumer gave up on it.
	OriginalStream  string `json:"original_stream"`
	OriginalSeq     uint64 `json:"original_seq"`
	OriginalSubject string `json:"original_subject"`
	// OriginalNatsMsgID is the Nats-Msg-Id the original was published with.
	OriginalNatsMsgID string `json:"original_nats_msg_id,omitempty"`
	// MsgID is ce-id: the message's identity and every inbox's key.
	MsgID        string    `json:"msg_id"`
	Attempts     int       `json:"attempts"`
	FirstFailure time.Time `json:"first_failure,omitzero"`
	LastFailure  time.Time `json:"last_failure,omitzero"`
	Error        string    `json:"error"`
	Reason       string    `json:"reason"`
	// Headers are every header stored with the DLQ message.
	Headers nats.Header `json:"headers"`
	Payload []byte      `json:"payload"`
	// Replayed is nil if the audit has no replay of this entry.
	Replayed *Replayed `json:"replayed,omitempty"`
}

// Filter selects entries; zero fields select everything. All set fields
// must match.
type Filter struct {
	// Consumer is the durable consumer that gave up (exact name).
	Consumer string
	// Subject is the original subject; NATS wildcards (* and >) allowed.
	Subject string
	// Since and Until bound the time the message entered the DLQ.
	Since, Until time.Time
	// ErrorContains matches the last error, ignoring case.
	ErrorContains string
	// Seqs restricts the selection to these DLQ sequences; each must exist.
	Seqs []uint64
}

// IsZero reports whether f selects every entry.
func (f Filter) IsZero() bool {
	return f.Consumer == "" && f.Subject == "" && f.Since.IsZero() && f.Until.IsZero() &&
		f.ErrorContains == "" && len(f.Seqs) == 0
}

// Validate reports a malformed filter (ErrInvalidFilter); List calls it.
func (f Filter) Validate() error {
	if f.Consumer != "" && !validToken(f.Consumer) {
		return fmt.Errorf("%w: consumer %q: a consumer name has no dots, wildcards or spaces", ErrInvalidFilter, f.Consumer)
	}
	if f.Subject != "" && !validFilterSubject(f.Subject) {
		return fmt.Errorf("%w: subject %q: want dot-separated tokens, * for one token, > for the rest", ErrInvalidFilter, f.Subject)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("%w: until %s is before since %s", ErrInvalidFilter,
			f.Until.UTC().Format(time.RFC3339), f.Since.UTC().Format(time.RFC3339))
	}
	if len(f.Seqs) > MaxLimit {
		return fmt.Errorf("%w: %d sequences > %d", ErrInvalidFilter, len(f.Seqs), MaxLimit)
	}
	for _, s := range f.Seqs {
		if s == 0 {
			return fmt.Errorf("%w: sequence 0: sequences start at 1", ErrInvalidFilter)
		}
	}
	return nil
}

// natsFilter is the subject filter the server applies: consumer and original
// subject are both in the DLQ subject, dlq.<consumer>.<original subject>.
func (f Filter) natsFilter() string {
	c, s := f.Consumer, f.Subject
	if c == "" {
		c = "*"
	}
	if s == "" {
		s = ">"
	}
	return SubjectPrefix + c + "." + s
}

// matches applies every filter to e (the server already applied consumer and
// subject when listing; Get-by-sequence relies on this alone).
func (f Filter) matches(e Entry) bool {
	if f.Consumer != "" && e.Consumer != f.Consumer {
		return false
	}
	if f.Subject != "" && !subjectMatches(f.Subject, e.OriginalSubject) {
		return false
	}
	if !f.Since.IsZero() && e.StoredAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && e.StoredAt.After(f.Until) {
		return false
	}
	if f.ErrorContains != "" && !strings.Contains(strings.ToLower(e.Error), strings.ToLower(f.ErrorContains)) {
		return false
	}
	return true
}

// List returns up to limit entries matching f (limit 0: DefaultLimit; at
// most MaxLimit), oldest first, with their replay marks. With f.Seqs it gets
// each sequence (an unknown one is ErrNotFound) and applies the other fields
// to them; otherwise it reads the stream through an ordered consumer filtered
// on the DLQ subject, starting at f.Since, and stops at the stream's last
// message as of the call, at f.Until or at limit, whichever comes first.
func (a *Admin) List(ctx context.Context, f Filter, limit int) ([]Entry, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	if limit > MaxLimit {
		return nil, fmt.Errorf("%w: limit %d > %d", ErrInvalidFilter, limit, MaxLimit)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var out []Entry
	var err error
	if len(f.Seqs) > 0 {
		out, err = a.listSeqs(ctx, f, limit)
	} else {
		out, err = a.scan(ctx, f, limit)
	}
	if err != nil {
		return nil, err
	}
	if err := a.markReplayed(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *Admin) listSeqs(ctx context.Context, f Filter, limit int) ([]Entry, error) {
	st, err := a.dlqStream(ctx)
	if err != nil {
		return nil, err
	}
	seen := make(map[uint64]bool, len(f.Seqs))
	var out []Entry
	for _, seq := range f.Seqs {
		if seen[seq] {
			continue
		}
		seen[seq] = true
		e, err := a.get(ctx, st, seq)
		if err != nil {
			return nil, err
		}
		if f.matches(e) && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

func (a *Admin) scan(ctx context.Context, f Filter, limit int) ([]Entry, error) {
	st, err := a.dlqStream(ctx)
	if err != nil {
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, natsTimeout)
	info, err := st.Info(ictx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", a.stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, nil
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{f.natsFilter()},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: time.Minute,
	}
	if !f.Since.IsZero() {
		since := f.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cctx, cancel := context.WithTimeout(ctx, natsTimeout)
	cons, err := st.OrderedConsumer(cctx, cfg)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("dlq: read %s: %w", a.stream, err)
	}
	var out []Entry
	// The loop ends: every batch either advances through a finite stream
	// (bounded by last) or is empty.
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// No-wait pulls return what is stored now: a listing never waits
		// for messages that have not arrived.
		batch, err := cons.FetchNoWait(fetchBatch)
		if err != nil {
			return nil, fmt.Errorf("dlq: read %s: %w", a.stream, err)
		}
		n := 0
		done := false
		for m := range batch.Messages() {
			n++
			if done {
				continue // drain the batch
			}
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("dlq: read %s: %w", a.stream, err)
			}
			if md.Sequence.Stream > last || (!f.Until.IsZero() && md.Timestamp.After(f.Until)) {
				done = true
				continue
			}
			e := decode(md.Sequence.Stream, m.Subject(), md.Timestamp, m.Headers(), m.Data())
			if f.matches(e) {
				out = append(out, e)
				if len(out) >= limit {
					done = true
				}
			}
			if md.NumPending == 0 || md.Sequence.Stream == last {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("dlq: read %s: %w", a.stream, err)
		}
		if done || n == 0 {
			return out, nil
		}
	}
}

// Get returns the entry at DLQ sequence seq, or an error wrapping ErrNotFound.
func (a *Admin) Get(ctx context.Context, seq uint64) (Entry, error) {
	st, err := a.dlqStream(ctx)
	if err != nil {
		return Entry{}, err
	}
	e, err := a.get(ctx, st, seq)
	if err != nil {
		return Entry{}, err
	}
	es := []Entry{e}
	if err := a.markReplayed(ctx, es); err != nil {
		return Entry{}, err
	}
	return es[0], nil
}

func (a *Admin) get(ctx context.Context, st jetstream.Stream, seq uint64) (Entry, error) {
	if seq == 0 {
		return Entry{}, fmt.Errorf("%w with sequence 0 (sequences start at 1)", ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Entry{}, fmt.Errorf("%w with sequence %d", ErrNotFound, seq)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("dlq: get %s/%d: %w", a.stream, seq, err)
	}
	h := m.Header
	if h != nil {
		// A direct get adds where the message is stored as headers; they
		// were not part of what the dead-lettering consumer published.
		h = cloneHeader(h)
		for _, k := range []string{jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer,
			jetstream.SubjectHeader, "Nats-Last-Sequence", "Nats-Num-Pending"} {
			delete(h, k)
		}
	}
	return decode(m.Sequence, m.Subject, m.Time, h, m.Data), nil
}

func (a *Admin) dlqStream(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := context.WithTimeout(ctx, natsTimeout)
	defer cancel()
	st, err := a.js.Stream(ctx, a.stream)
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", a.stream, err)
	}
	return st, nil
}

// decode reads the DLQ headers. It never fails: a header that is missing
// or malformed leaves its field zero, and the entry can still be shown,
// replayed (if its subject is known) or purged.
func decode(seq uint64, subject string, stored time.Time, h nats.Header, data []byte) Entry {
	e := Entry{
		Seq: seq, Subject: subject, StoredAt: stored, Headers: h, Payload: data,
		Consumer:          h.Get(HeaderConsumer),
		OriginalStream:    h.Get(HeaderStream),
		OriginalSubject:   h.Get(HeaderSubject),
		OriginalNatsMsgID: h.Get(HeaderMsgID),
		MsgID:             h.Get(outbox.HeaderID),
		Error:             h.Get(HeaderError),
		Reason:            h.Get(HeaderReason),
	}
	// The DLQ subject carries consumer and original subject too; it is the
	// fallback when a header is missing.
	if rest, ok := strings.CutPrefix(subject, SubjectPrefix); ok {
		if c, orig, ok := strings.Cut(rest, "."); ok {
			if e.Consumer == "" {
				e.Consumer = c
			}
			if e.OriginalSubject == "" {
				e.OriginalSubject = orig
			}
		}
	}
	e.OriginalSeq, _ = strconv.ParseUint(h.Get(HeaderSequence), 10, 64)
	e.Attempts, _ = strconv.Atoi(h.Get(HeaderAttempts))
	e.FirstFailure, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderFirstFailure))
	e.LastFailure, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderLastFailure))
	return e
}

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Actor is who replays (the CLI uses $USER@hostname or --actor);
	// required unless DryRun.
	Actor string
	// DryRun reports what would be replayed and changes nothing.
	DryRun bool
	// Force replays entries the audit says were replayed already.
	Force bool
	// Rate bounds replays per second; 0 means no limit.
	Rate float64
	// Progress, if set, is called after each entry (replayed or skipped).
	Progress func(done, total int)
}

// ReplayResult is what happened to one entry.
type ReplayResult struct {
	Seq             uint64 `json:"dlq_seq"`
	Consumer        string `json:"consumer"`
	OriginalSubject string `json:"original_subject"`
	MsgID           string `json:"msg_id"`
	// NewNatsMsgID, Stream and StreamSeq identify the republished message
	// (empty in a dry run and for skipped entries).
	NewNatsMsgID string `json:"new_nats_msg_id,omitempty"`
	Stream       string `json:"stream,omitempty"`
	StreamSeq    uint64 `json:"stream_seq,omitempty"`
	// Previously is the entry's replay mark before this run.
	Previously *Replayed `json:"previously_replayed,omitempty"`
	// Err is nil if the entry was (or, in a dry run, would be) replayed;
	// ErrAlreadyReplayed, ErrNoMessageID or ErrNoSubject if it was skipped.
	Err error `json:"-"`
}

// Skipped reports whether the entry was left alone.
func (r ReplayResult) Skipped() bool { return r.Err != nil }

// ReplayReport sums up a Replay: one result per entry handled, in order.
type ReplayReport struct {
	DryRun   bool           `json:"dry_run"`
	Results  []ReplayResult `json:"results"`
	Replayed int            `json:"replayed"`
	Skipped  int            `json:"skipped"`
}

// Replay republishes entries to their original subjects (see Admin). An
// entry already replayed (without Force) or without a ce-id is skipped and
// reported with its reason; that is not an error. An error (broker or
// database unavailable, audit write failed, ctx ended) stops the replay: the
// report then holds every entry handled before it, and the entry it stopped
// at if its publish had already been acknowledged.
func (a *Admin) Replay(ctx context.Context, entries []Entry, o ReplayOptions) (ReplayReport, error) {
	rep := ReplayReport{DryRun: o.DryRun}
	if len(entries) > MaxLimit {
		return rep, fmt.Errorf("dlq: replay of %d entries > %d at once", len(entries), MaxLimit)
	}
	if o.Rate < 0 {
		return rep, fmt.Errorf("dlq: replay rate %v: want > 0, or 0 for no limit", o.Rate)
	}
	if !o.DryRun {
		if err := validActor(o.Actor); err != nil {
			return rep, err
		}
		unlock, err := a.lock(ctx)
		if err != nil {
			return rep, err
		}
		defer unlock()
	}
	// The marks are read again under the lock: the entries may have been
	// listed before another operator's replay finished. An entry given twice
	// is replayed once.
	seen := make(map[uint64]bool, len(entries))
	uniq := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if !seen[e.Seq] {
			seen[e.Seq] = true
			uniq = append(uniq, e)
		}
	}
	entries = uniq
	if err := a.markReplayed(ctx, entries); err != nil {
		return rep, err
	}
	var lim *rate.Limiter
	if o.Rate > 0 && !o.DryRun {
		lim = rate.NewLimiter(rate.Limit(o.Rate), 1)
	}
	for i, e := range entries {
		r := ReplayResult{Seq: e.Seq, Consumer: e.Consumer, OriginalSubject: e.OriginalSubject, MsgID: e.MsgID, Previously: e.Replayed}
		switch {
		case e.MsgID == "":
			r.Err = fmt.Errorf("%w: DLQ message %d: replayed under a new Nats-Msg-Id it would be a new message to every consumer", ErrNoMessageID, e.Seq)
		case e.OriginalSubject == "":
			r.Err = fmt.Errorf("%w: DLQ message %d has no original subject", ErrNoSubject, e.Seq)
		case e.Replayed != nil && !o.Force:
			r.Err = fmt.Errorf("%w: DLQ message %d, %d time(s), last at %s by %s", ErrAlreadyReplayed, e.Seq,
				e.Replayed.Count, e.Replayed.LastAt.UTC().Format(time.RFC3339), e.Replayed.LastActor)
		case o.DryRun:
		default:
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return rep, err
				}
			}
			if err := a.replayOne(ctx, e, &r, o.Actor); err != nil {
				if r.NewNatsMsgID != "" {
					rep.Results = append(rep.Results, r)
					rep.Replayed++
				}
				return rep, err
			}
		}
		rep.Results = append(rep.Results, r)
		if r.Skipped() {
			rep.Skipped++
		} else {
			rep.Replayed++
		}
		if o.Progress != nil {
			o.Progress(i+1, len(entries))
		}
	}
	return rep, nil
}

// replayOne publishes e and audits it; r.NewNatsMsgID is set once the
// publish is acknowledged.
func (a *Admin) replayOne(ctx context.Context, e Entry, r *ReplayResult, actor string) error {
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("dlq: new message id: %w", err)
	}
	m := ReplayMessage(e, id.String())
	var opts []jetstream.PublishOpt
	if e.OriginalStream != "" {
		// The replay must land where the original was: if the subject is
		// no longer captured by that stream, fail instead of feeding another.
		opts = append(opts, jetstream.WithExpectStream(e.OriginalStream))
	}
	pctx, cancel := context.WithTimeout(ctx, natsTimeout)
	ack, err := a.js.PublishMsg(pctx, m, opts...)
	cancel()
	if err != nil {
		return fmt.Errorf("dlq: replay DLQ message %d to %s: %w", e.Seq, e.OriginalSubject, err)
	}
	if ack.Duplicate {
		// Impossible with a fresh UUIDv7; if it happens the message was not
		// stored, and saying "replayed" would be a lie.
		return fmt.Errorf("dlq: replay DLQ message %d: the broker reported Nats-Msg-Id %s as a duplicate", e.Seq, id)
	}
	r.NewNatsMsgID, r.Stream, r.StreamSeq = id.String(), ack.Stream, ack.Sequence
	err = a.audit(ctx, AuditRecord{
		Action: ActionReplay, DLQSeq: e.Seq, Consumer: e.Consumer, OriginalStream: e.OriginalStream,
		OriginalSubject: e.OriginalSubject, MsgID: e.MsgID, NewNatsMsgID: r.NewNatsMsgID,
		ReplayStream: ack.Stream, ReplayStreamSeq: ack.Sequence, Actor: actor,
	})
	if err != nil {
		return fmt.Errorf("%w (DLQ message %d WAS replayed as %s/%d but is not marked: a later replay would republish it, which the consumers' inboxes ignore)",
			err, e.Seq, ack.Stream, ack.Sequence)
	}
	return nil
}

// ReplayMessage is the message a replay of e publishes under the Nats-Msg-Id
// newID: e's original subject, payload and headers without the DLQ's
// (Paypipe-Dlq-*) and the broker's (Nats-*), plus paypipe-original-msg-id.
// ce-id is kept: it is the inbox key.
func ReplayMessage(e Entry, newID string) *nats.Msg {
	m := nats.NewMsg(e.OriginalSubject)
	for k, vs := range e.Headers {
		if hasPrefixFold(k, "Paypipe-Dlq-") || hasPrefixFold(k, "Nats-") {
			continue
		}
		m.Header[k] = append([]string(nil), vs...)
	}
	m.Header.Set(jetstream.MsgIDHeader, newID)
	if e.MsgID != "" {
		m.Header.Set(outbox.HeaderOriginalMsgID, e.MsgID)
	}
	m.Data = e.Payload
	return m
}

// PurgeResult is what happened to one entry.
type PurgeResult struct {
	Seq             uint64 `json:"dlq_seq"`
	Consumer        string `json:"consumer"`
	OriginalSubject string `json:"original_subject"`
	MsgID           string `json:"msg_id"`
	// Err is nil if the entry was deleted; ErrNotFound if it was already gone.
	Err error `json:"-"`
}

// PurgeReport sums up a Purge.
type PurgeReport struct {
	Results []PurgeResult `json:"results"`
	Purged  int           `json:"purged"`
	Missing int           `json:"missing"`
}

// Purge deletes entries from the DLQ stream and audits each deletion. An
// entry already gone is reported (ErrNotFound), not an error; any other
// failure stops the purge, and the report holds what was done before it.
func (a *Admin) Purge(ctx context.Context, entries []Entry, actor string) (PurgeReport, error) {
	var rep PurgeReport
	if len(entries) > MaxLimit {
		return rep, fmt.Errorf("dlq: purge of %d entries > %d at once", len(entries), MaxLimit)
	}
	if err := validActor(actor); err != nil {
		return rep, err
	}
	unlock, err := a.lock(ctx)
	if err != nil {
		return rep, err
	}
	defer unlock()
	st, err := a.dlqStream(ctx)
	if err != nil {
		return rep, err
	}
	for _, e := range entries {
		r := PurgeResult{Seq: e.Seq, Consumer: e.Consumer, OriginalSubject: e.OriginalSubject, MsgID: e.MsgID}
		dctx, cancel := context.WithTimeout(ctx, natsTimeout)
		err := st.DeleteMsg(dctx, e.Seq)
		cancel()
		if err != nil {
			// The server answers "no message found" for a sequence already
			// deleted; confirm with a get rather than parse its text.
			if _, gerr := a.get(ctx, st, e.Seq); errors.Is(gerr, ErrNotFound) {
				r.Err = fmt.Errorf("%w with sequence %d (already gone)", ErrNotFound, e.Seq)
				rep.Results = append(rep.Results, r)
				rep.Missing++
				continue
			}
			return rep, fmt.Errorf("dlq: delete DLQ message %d: %w", e.Seq, err)
		}
		rep.Results = append(rep.Results, r)
		rep.Purged++
		err = a.audit(ctx, AuditRecord{
			Action: ActionPurge, DLQSeq: e.Seq, Consumer: e.Consumer, OriginalStream: e.OriginalStream,
			OriginalSubject: e.OriginalSubject, MsgID: e.MsgID, Actor: actor,
		})
		if err != nil {
			return rep, fmt.Errorf("%w (DLQ message %d WAS deleted but its purge is not recorded)", err, e.Seq)
		}
	}
	return rep, nil
}

func validActor(actor string) error {
	if strings.TrimSpace(actor) == "" || len(actor) > 255 {
		return errors.New("dlq: an actor (who does this, 1–255 characters) is required for the audit")
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func cloneHeader(h nats.Header) nats.Header {
	out := make(nats.Header, len(h))
	for k, vs := range h {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// validToken accepts one literal subject token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c == '.' || c == '*' || c == '>' || unicode.IsSpace(c) || unicode.IsControl(c) {
			return false
		}
	}
	return true
}

// validFilterSubject accepts a subject filter: literal tokens, * for one
// token, > as the last token.
func validFilterSubject(s string) bool {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "*":
		case t == ">":
			if i != len(toks)-1 {
				return false
			}
		case !validToken(t):
			return false
		}
	}
	return true
}

// subjectMatches reports whether subject matches the filter pattern.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, t := range p {
		if t == ">" {
			return len(s) > i
		}
		if i >= len(s) || (t != "*" && t != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}
