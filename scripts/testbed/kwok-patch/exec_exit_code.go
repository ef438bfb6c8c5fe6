// Copied into a cache copy of kwok's pkg/kwok/server at build time (see build.sh build_kwok_cmd),
// with debugging_exec.go changed to return kubiliticsExitCode(err).
//
// kwok v0.8.0 returns a wrapped *os/exec.ExitError from `kubectl exec`, so the streaming server
// cannot tell the exit code and every non-zero exit reaches the client as a generic failure
// (kubectl exits 1). A kubelet reports the command's real exit code; this restores that.

package server

import (
	"errors"
	osexec "os/exec"

	utilexec "k8s.io/utils/exec"
)

func kubiliticsExitCode(err error) error {
	var exitErr *osexec.ExitError
	if errors.As(err, &exitErr) && exitErr.Exited() {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	return err
}
