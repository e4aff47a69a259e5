package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// command is one subcommand's flag set. Every flag is also read from the environment
// as CREASE_<NAME> (upper case, '-' → '_') when not given on the command line.
type command struct {
	name  string
	usage string
	fs    *flag.FlagSet
}

func newCommand(name, usage string) *command {
	fs := flag.NewFlagSet("crease "+name, flag.ContinueOnError)
	c := &command{name: name, usage: usage, fs: fs}
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: crease %s [flags]\n\n%s\n\nFlags (each also an environment variable CREASE_<NAME>):\n", name, usage)
		fs.PrintDefaults()
	}
	return c
}

// flagGroup is a set of flags more than one command has (gateway, Redis, log, API).
type flagGroup interface{ register(fs *flag.FlagSet) }

// register adds each group's flags to the command.
func (c *command) register(groups ...flagGroup) {
	for _, g := range groups {
		g.register(c.fs)
	}
}

// envName is the environment variable of a flag.
func envName(flagName string) string {
	return "CREASE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, then fills unset flags from the environment.
func (c *command) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("crease %s: unexpected argument %q", c.name, c.fs.Arg(0))
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := c.fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("crease %s: %s=%q: %v", c.name, envName(f.Name), v, e)
			}
		}
	})
	return err
}

// listFlag is a repeatable or comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// logFlags are the logging flags every command has.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.format)
}
