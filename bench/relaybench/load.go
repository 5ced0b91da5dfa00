package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// The bench shares its machine (and often its PostgreSQL server) with other
// work. Every figure therefore records where the CPU went while it ran:
// this process (writers, relays, embedded nats-server, watcher), the
// PostgreSQL backends serving the bench database, and everything else
// ("other": other processes, PostgreSQL's shared background processes, the
// kernel). A figure with a high other_cpu_pct was measured on a busy machine.

// cpuSnap is a point-in-time reading of the CPU counters (clock ticks).
type cpuSnap struct {
	at       time.Time
	busy     int64         // all CPUs, /proc/stat: user+nice+system+irq+softirq+steal
	self     int64         // this process
	backends map[int]int64 // PostgreSQL backends of the bench database
	load1    float64       // 1-minute load average
	ok       bool          // /proc was readable
}

// LoadInfo is the CPU accounting of one figure.
type LoadInfo struct {
	Load1Before float64 `json:"loadavg_1m_before"`
	Load1After  float64 `json:"loadavg_1m_after"`
	// Percentages of the machine's CPU capacity (nproc × wall time).
	BenchCPUPct   float64 `json:"bench_process_cpu_pct"`
	BackendCPUPct float64 `json:"pg_backends_cpu_pct"`
	OtherCPUPct   float64 `json:"other_cpu_pct"`
	WallSeconds   float64 `json:"wall_seconds"`
}

// userHZ is the kernel's USER_HZ; 100 on every Linux this runs on.
const userHZ = 100

func (e *env) snap(ctx context.Context) cpuSnap {
	s := cpuSnap{at: time.Now(), load1: loadAvg()}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return s
	}
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, _ := strconv.ParseInt(f[i], 10, 64)
		s.busy += v
	}
	s.self = procTicks("self")
	s.backends = map[int]int64{}
	for _, pid := range backendPIDs(ctx, e.wpool) {
		s.backends[pid] = procTicks(strconv.Itoa(pid))
	}
	s.ok = true
	return s
}

func (e *env) loadBetween(a, b cpuSnap) *LoadInfo {
	li := &LoadInfo{Load1Before: a.load1, Load1After: b.load1, WallSeconds: round(b.at.Sub(a.at).Seconds(), 2)}
	if !a.ok || !b.ok {
		return li
	}
	capTicks := b.at.Sub(a.at).Seconds() * userHZ * float64(runtime.NumCPU())
	if capTicks <= 0 {
		return li
	}
	busy := float64(b.busy - a.busy)
	self := float64(b.self - a.self)
	var be float64
	for pid, t := range b.backends {
		be += float64(t - a.backends[pid]) // a backend born during the run started at 0
	}
	li.BenchCPUPct = round(100*self/capTicks, 1)
	li.BackendCPUPct = round(100*be/capTicks, 1)
	li.OtherCPUPct = round(100*max(busy-self-be, 0)/capTicks, 1)
	return li
}

// addLoad sums the accounting of several runs (drain repetitions).
func addLoad(acc, li *LoadInfo) *LoadInfo {
	if acc == nil {
		c := *li
		return &c
	}
	w := acc.WallSeconds + li.WallSeconds
	if w <= 0 {
		return acc
	}
	mix := func(x, y float64) float64 { return round((x*acc.WallSeconds+y*li.WallSeconds)/w, 1) }
	return &LoadInfo{
		Load1Before:   acc.Load1Before,
		Load1After:    li.Load1After,
		BenchCPUPct:   mix(acc.BenchCPUPct, li.BenchCPUPct),
		BackendCPUPct: mix(acc.BackendCPUPct, li.BackendCPUPct),
		OtherCPUPct:   mix(acc.OtherCPUPct, li.OtherCPUPct),
		WallSeconds:   round(w, 2),
	}
}

// procTicks is utime+stime of /proc/<pid>/stat.
func procTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command may hold spaces; fields resume after its closing paren.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14: utime
	k, _ := strconv.ParseInt(f[12], 10, 64) // field 15: stime
	return u + k
}

func backendPIDs(ctx context.Context, pool *pgxpool.Pool) []int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		return nil
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var pid int32
		if rows.Scan(&pid) == nil {
			out = append(out, int(pid))
		}
	}
	return out
}

// loadAvg is the 1-minute load average (0 where /proc is missing).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	_, _ = fmt.Sscanf(string(b), "%f", &l)
	return l
}
