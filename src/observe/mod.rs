//! What weir tells an operator about itself beyond metrics and the access
//! log: the ring of recent events ([`events`]) that `GET /events` serves,
//! and the account an upgraded process leaves ([`account`]).

pub mod account;
pub mod events;
