// Copied into a cache copy of kwok's pkg/kwok/server at build time (see build.sh build_kwok_cmd),
// with debugging_exec.go changed to call kubiliticsExecWrapper before it runs the command.
//
// kwok runs `kubectl exec` commands on the machine it runs on: a "local" exec target. On a
// developer's machine that means any exec into a simulated pod (from kubectl, the API, a test)
// runs on the host as kwok's user. When the exec target's envs name KUBILITICS_EXEC_WRAPPER, kwok
// runs `<wrapper> <namespace> <pod> <container> -- <command...>` instead, so the testbed can run
// the command in its simulated container (scripts/testbed/simexec.py) and never on the host.
// Without that env the behaviour is kwok's own.

package server

import (
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
)

func kubiliticsExecWrapper(envs []internalversion.EnvVar, namespace, pod, container string, cmd []string) []string {
	for _, env := range envs {
		if env.Name == "KUBILITICS_EXEC_WRAPPER" && env.Value != "" {
			return append([]string{env.Value, namespace, pod, container, "--"}, cmd...)
		}
	}
	return cmd
}
