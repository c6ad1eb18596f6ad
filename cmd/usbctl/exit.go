package main

import "errors"

// exitCode is returned by a command that has already printed what went wrong
// and only needs the process to exit with this status (check: 1 on errors).
type exitCode int

func (e exitCode) Error() string { return "exit status" }

func asExitCode(err error, ec *exitCode) bool { return errors.As(err, ec) }
