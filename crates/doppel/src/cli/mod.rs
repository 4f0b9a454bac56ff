mod client;
pub mod command;
pub mod credential;
mod table;
mod target;
pub mod twin;
mod view;
