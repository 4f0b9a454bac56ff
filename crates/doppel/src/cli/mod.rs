mod client;
pub mod credential;
mod table;
mod target;
pub mod twin;
mod view;
