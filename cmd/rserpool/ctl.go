package main

import (
	"fmt"
	"os"
	"sort"
)

// ctlCommands are the subcommands of "rserpool ctl"; each registers itself.
var ctlCommands = map[string]command{}

func registerCtl(c command) { ctlCommands[c.name] = c }

func init() {
	register(command{name: "ctl", summary: "tools: decode, resolve, handlespace, dial", run: runCtl})
}

func runCtl(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: rserpool ctl <decode|resolve|handlespace|dial> [flags]")
		names := make([]string, 0, len(ctlCommands))
		for n := range ctlCommands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(os.Stderr, "  %-12s %s\n", n, ctlCommands[n].summary)
		}
		return 2
	}
	c, ok := ctlCommands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "rserpool ctl: unknown command %q\n", args[0])
		return 2
	}
	return c.run(args[1:])
}
