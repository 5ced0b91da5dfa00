// Command reconbench measures the reconciler: it writes a settlement file of
// -lines charge lines (streamed to a temporary directory), seeds
// recon.expected with those payments through COPY, reconciles the file with
// Reconciler.Run on a scratch database, and reports lines per second and
// the peak Go heap. Run it at two sizes to see that memory does not grow
// with the file:
//
//	go run ./bench/reconbench -lines 1000000 -out bench/results/recon.json
//	go run ./bench/reconbench -lines 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
)

func main() {
	cfg := Config{}
	flag.IntVar(&cfg.Lines, "lines", 1_000_000, "charge lines in the settlement file")
	flag.IntVar(&cfg.ChunkLines, "chunk", 5000, "reconciler ChunkLines")
	flag.StringVar(&cfg.Out, "out", "", "write the result as JSON to this file (e.g. bench/results/recon.json)")
	flag.StringVar(&cfg.DatabaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server to create a scratch database on (default $DATABASE_URL)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "reconbench: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("recon_lines_per_s=%.0f peak_heap_mb=%.1f lines=%d chunks=%d\n", res.LinesPerSecond, res.PeakHeapMB, res.Lines, res.Chunks)
	phases := make([]string, 0, len(res.PhaseMsPerChunk))
	for p := range res.PhaseMsPerChunk {
		phases = append(phases, p)
	}
	sort.Strings(phases)
	for _, p := range phases {
		fmt.Printf("  %-10s %7.2f ms/chunk\n", p, res.PhaseMsPerChunk[p])
	}
}
