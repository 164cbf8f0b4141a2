package main

import "os"

func main() {
	args := os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "backend":
			os.Exit(runBackend(args[1:]))
		case "relay":
			os.Exit(runRelay(args[1:]))
		case "load":
			os.Exit(runLoadCmd(args[1:]))
		case "faults":
			os.Exit(runFaultsCmd(args[1:]))
		}
	}
	os.Exit(runBench(args))
}
