package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("sqlite-dir", "data", "directory holding the SQLite databases")
	flag.Parse()

	db, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/",
		Logger:    slog.New(&lazyAttrs{base: slog.NewTextHandler(os.Stderr, nil)}),
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Printf("ferretdb listening on %s, data in %s", *addr, *dir)
	if err := db.Run(ctx); err != nil {
		log.Fatalf("ferretdb: %v", err)
	}
}

// lazyAttrs keeps the attributes attached to a logger as they are and formats them only when
// a record is written. FerretDB attaches the arguments of every SQL statement (whole documents)
// to a logger for a debug line that the INFO level then drops, while slog's own handlers format
// attributes as soon as they are attached: that formatting was a third of the server's CPU.
type lazyAttrs struct {
	base  slog.Handler
	attrs []slog.Attr
}

func (h *lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.base.Enabled(ctx, level)
}

func (h *lazyAttrs) Handle(ctx context.Context, record slog.Record) error {
	if len(h.attrs) == 0 {
		return h.base.Handle(ctx, record)
	}
	return h.base.WithAttrs(h.attrs).Handle(ctx, record)
}

func (h *lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	all := make([]slog.Attr, 0, len(h.attrs)+len(attrs))
	return &lazyAttrs{base: h.base, attrs: append(append(all, h.attrs...), attrs...)}
}

func (h *lazyAttrs) WithGroup(name string) slog.Handler {
	base := h.base
	if len(h.attrs) > 0 {
		base = base.WithAttrs(h.attrs)
	}
	return &lazyAttrs{base: base.WithGroup(name)}
}
