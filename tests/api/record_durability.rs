//! The record's guarantee under failure, with real processes, one Redis and one Postgres:
//! a call whose owner is killed (SIGKILL) mid-call and adopted by another instance is
//! recorded once, in order; a database that hangs or refuses for a few seconds loses
//! nothing that was accepted, and the record catches up.
