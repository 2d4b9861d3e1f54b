package main

import "github.com/proxyd/proxyd/internal/admin"

// The admin API reads and changes the live limits through the running
// process (admin.Backend): this keeps app in step with that interface at
// build time rather than where admin.New is called.
var _ admin.Backend = (*app)(nil)
