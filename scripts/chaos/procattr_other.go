//go:build !linux

package main

import "syscall"

// childAttr puts a child in its own process group; outside Linux there is no
// parent-death signal, so a harness killed with SIGKILL can leave children.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
