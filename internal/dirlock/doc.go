// Package dirlock holds an advisory lock on a directory for the life of a process, so that two
// shears processes never work in the same run or work directory at once (issue 14: two train
// runs on one --out both "finished", every step twice in metrics.jsonl; a second "shears run"
// with a changed recipe deleted the live run under the first). The lock is flock(2) on a
// ".lock" file in the directory holding the holder's pid: the kernel releases it when the
// process ends however it ends (kill -9 included), so a stale lock cannot block anyone.
package dirlock
