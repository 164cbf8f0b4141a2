//go:build race

package handlespace

const raceEnabled = true
