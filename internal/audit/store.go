package audit

import (
	"context"
	"time"
)

// Row is one stored audit event: its place in the chain and its canonical body. The
// columns beside the body (time, operation, caller, token digests) are copies kept
// for queries; Verify checks them against the hashed body.
type Row struct {
	Seq          int64
	PrevHash     []byte
	Hash         []byte
	Body         string
	Time         time.Time
	Operation    string
	Caller       string
	TokenDigests [][]byte
	// MAC authenticates the event under the audit key of version MACVersion (EventMAC).
	MAC        []byte
	MACVersion int
}

// Checkpoint is a signed statement of the chain head.
type Checkpoint struct {
	Seq       int64     `json:"seq"`
	Hash      []byte    `json:"-"`
	Time      time.Time `json:"-"`
	Signature string    `json:"signature"`
}

// Appender is what the writer needs of the database: append a batch to the chain in
// one transaction, serialized against every other writer, durable when it returns nil.
// build receives the current head and returns the rows to insert.
type Appender interface {
	AppendAudit(ctx context.Context, build func(headSeq int64, headHash []byte) ([]Row, error)) error
}

// ChainReader reads the chain and its checkpoints.
type ChainReader interface {
	// ReadAudit calls fn for every event with from ≤ seq ≤ to (to 0: no bound), in
	// seq order.
	ReadAudit(ctx context.Context, from, to int64, fn func(Row) error) error
	// Checkpoints returns the stored checkpoints with from ≤ seq ≤ to (to 0: no bound).
	Checkpoints(ctx context.Context, from, to int64) ([]Checkpoint, error)
}

// CheckpointStore is what the checkpointer needs.
type CheckpointStore interface {
	AuditHead(ctx context.Context) (int64, []byte, error)
	InsertCheckpoint(ctx context.Context, c Checkpoint) error
	LastCheckpointSeq(ctx context.Context) (int64, error)
}

// ChainStore is everything the audit log needs of its storage. internal/store
// implements it on PostgreSQL and internal/store/memory in memory.
type ChainStore interface {
	Appender
	ChainReader
	CheckpointStore
	// Disclosures returns the events whose token digests include any of digests,
	// oldest first, with start ≤ time < end (a zero end: no bound).
	Disclosures(ctx context.Context, digests [][]byte, start, end time.Time) ([]Row, error)
}
