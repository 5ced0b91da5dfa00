package main

import "syscall"

// childSysProcAttr puts the child in its own process group, so a Ctrl-C at
// the terminal reaches only the bench, which then stops the child itself
// (SIGTERM, bounded wait, SIGKILL); and it makes the kernel kill the child
// if the bench dies without stopping it (a panic, SIGKILL), so no orphaned
// serve keeps the database busy.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
