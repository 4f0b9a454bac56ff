mod client;
pub mod command;
pub mod credential;
mod profile;
mod table;
mod target;
pub mod token;
pub mod twin;
mod view;
