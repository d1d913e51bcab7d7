//! Risk control: the cheap refusals made before the stock lock, so that abuse never reaches
//! Redis. Rate limits live in [`limits`]; the blacklist copy in [`blacklist`]. The sale window
//! and the sold-out flag are checked from the sale catalog ([`crate::catalog`]).

pub mod blacklist;
pub mod limits;
