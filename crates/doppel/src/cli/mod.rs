mod client;
pub mod credential;
mod table;
pub mod twin;
mod view;
