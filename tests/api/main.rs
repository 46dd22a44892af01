mod crash;
mod health;
mod helpers;
mod listing;
mod lookup;
mod sender;
mod status_callback;
mod store_model;
