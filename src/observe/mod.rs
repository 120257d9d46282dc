//! What weir tells an operator about itself beyond metrics and the access
//! log: the ring of recent events ([`events`]) that `GET /events` serves.

pub mod events;
