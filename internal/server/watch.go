package server

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// watchDebounce lets an editor finish writing (several events) before a
// reload reads the file.
const watchDebounce = 150 * time.Millisecond

// watchConfig reloads when the --config file changes, until stop is
// closed. It watches the file's directory, not the file, so that editors'
// rename-on-save and Kubernetes ConfigMap symlink swaps (the ..data link is
// replaced) are seen too; a change is acted on only when the file's
// content differs from what was last loaded.
func (s *Server) watchConfig(path string, stop <-chan struct{}, done chan<- struct{}) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer close(done)
		defer w.Close()
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("config watcher panicked; file changes are no longer watched", zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		// Start from the file as it was loaded, and look once at once: an
		// edit made before the watch began is applied, not missed.
		last := s.deps.ConfigSum
		if last == nil {
			last = fileSum(path)
		}
		timer := time.NewTimer(0)
		fire := timer.C
		for {
			select {
			case <-stop:
				timer.Stop()
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) {
					continue
				}
				timer.Reset(watchDebounce)
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("config watcher", zap.Error(err))
			case <-fire:
				fire = nil
				sum := fileSum(path)
				if sum == nil || bytes.Equal(sum, last) {
					continue // gone for now (mid-rename) or unchanged
				}
				last = sum
				s.log.Info("config file changed", zap.String("file", path))
				_ = s.Reload() // logs its failure
			}
		}
	}()
	return nil
}

func fileSum(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(b)
	return s[:]
}
