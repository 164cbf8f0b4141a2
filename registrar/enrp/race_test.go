//go:build race

package enrp

const raceEnabled = true
