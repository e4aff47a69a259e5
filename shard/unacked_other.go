//go:build !linux

package shard

import "github.com/panjf2000/gnet/v2"

// unacked cannot see the kernel's send queue here: a lingering connection closes once
// gnet's buffer is empty.
func unacked(gnet.Conn) int { return 0 }

// unread cannot see the kernel's receive queue here: a handshake past its deadline is
// closed even when its request is waiting.
func unread(gnet.Conn) int { return 0 }
