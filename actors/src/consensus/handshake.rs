//! Mutual authentication of a control-plane connection with the cluster secret, before any
//! Raft RPC crosses it.
//!
//! Without it, anyone who can reach a member's control port (client port + 10000) could send
//! votes, heartbeats or a switchover request, and take over who is primary. The exchange is
//! the replication link's (`replication/auth.rs`) with the control plane's own labels, so a
//! proof from one kind of link is worthless on the other:
//!
//! 1. the caller sends the opening line ([`OPENING`]);
//! 2. the accepting member answers [`Greeting::Challenge`] with a fresh nonce;
//! 3. the caller answers [`Greeting::Proof`]: its own nonce and its proof over both;
//! 4. the accepting member checks the proof before it reads or answers anything else (an
//!    impostor learns nothing of the cluster) and answers [`Greeting::Accepted`] with its own
//!    proof, or [`Greeting::Refused`] with why, and closes;
//! 5. the caller checks that proof before it sends a request, so a member impersonated by
//!    someone on the path without the secret is not told anything either.
//!
//! A member started without a secret sends no proof and accepts callers that send none; when
//! one side has a secret and the other has not, the connection is refused with a message that
//! says to start every member with the same `--cluster-secret`. The secret itself never
//! crosses the wire and a recorded exchange is worthless in the next (fresh nonces both ways).
//! Frames are the RPC frames of `wire.rs`, so the handshake runs unchanged over TLS.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::consensus::wire::{read_frame_within, read_opening, write_frame, NetError, OPENING};
use crate::replication::auth::{self, ClusterSecret, Side};

/// One message of the handshake.
#[derive(Debug, Serialize, Deserialize)]
pub enum Greeting {
    /// The accepting member's nonce.
    Challenge {
        /// Fresh random hex.
        nonce: String,
    },
    /// The caller's nonce and its proof over both nonces (`None`: it has no secret).
    Proof {
        /// Fresh random hex.
        nonce: String,
        /// HMAC of the caller's label and both nonces, as hex.
        proof: Option<String>,
    },
    /// The caller was accepted; the accepting member's proof (`None`: it has no secret).
    Accepted {
        /// HMAC of the accepting member's label and both nonces, as hex.
        proof: Option<String>,
    },
    /// The caller was not accepted, and why (for its log).
    Refused(String),
}

/// The largest handshake message read: two nonces and a proof fit with room to spare, and a
/// peer that has not proved anything yet cannot make this side hold more.
pub const MAX_GREETING: usize = 1024;

/// Reads the next handshake message. The peer closing the connection is an error here, but a
/// network one (a member killed or cut off mid-handshake), not a refusal: refusals say so
/// ([`Greeting::Refused`]) and are what the logs warn about.
async fn next<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Greeting, NetError> {
    read_frame_within(stream, MAX_GREETING)
        .await?
        .ok_or_else(|| {
            NetError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the handshake",
            ))
        })
}

/// `greeting` as the logs show it: at most 80 characters, whatever a peer put in it.
fn shown(greeting: &Greeting) -> String {
    format!("{greeting:?}").chars().take(80).collect()
}

/// The accepting side: reads the opening line, challenges the caller and checks its proof.
/// On `Err` the connection must be closed unanswered (a refusal was sent if the caller got as
/// far as proving).
pub async fn accept<S>(stream: &mut S, secret: Option<&ClusterSecret>) -> Result<(), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    read_opening(stream).await?;
    let own_nonce = auth::nonce();
    let challenge = Greeting::Challenge {
        nonce: own_nonce.clone(),
    };
    write_frame(stream, false, &challenge).await?;
    let (caller_nonce, caller_proof) = match next(stream).await? {
        Greeting::Proof { nonce, proof } if auth::is_nonce(&nonce) => (nonce, proof),
        other => {
            return Err(NetError::Unauthenticated(format!(
                "expected the caller's proof, got {}",
                shown(&other)
            )))
        }
    };
    let verdict = match (secret, caller_proof) {
        (Some(secret), Some(proof))
            if secret.verify(Side::ControlCaller, &own_nonce, &caller_nonce, &proof) =>
        {
            Ok(Some(secret.proof(
                Side::ControlServer,
                &own_nonce,
                &caller_nonce,
            )))
        }
        (Some(_), Some(_)) => Err("the caller's proof does not match this member's cluster secret"),
        (Some(_), None) => Err("the caller has no cluster secret; this member requires one"),
        // Without a secret there is nothing to check; a caller with one refuses this member
        // itself when no proof comes back.
        (None, _) => Ok(None),
    };
    match verdict {
        Ok(proof) => write_frame(stream, false, &Greeting::Accepted { proof }).await,
        Err(why) => {
            let refusal = Greeting::Refused(format!(
                "{why}: start every member with the same --cluster-secret"
            ));
            // Best effort: the caller learns why; the connection closes either way.
            let _ = write_frame(stream, false, &refusal).await;
            let _ = stream.shutdown().await;
            Err(NetError::Unauthenticated(why.into()))
        }
    }
}

/// The calling side: sends the opening line, proves the secret and checks the accepting
/// member's proof. Requests may follow once this answers `Ok`.
pub async fn call<S>(stream: &mut S, secret: Option<&ClusterSecret>) -> Result<(), NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(OPENING).await?;
    // Over TLS, written bytes wait in the session until flushed.
    stream.flush().await?;
    let server_nonce = match next(stream).await? {
        Greeting::Challenge { nonce } if auth::is_nonce(&nonce) => nonce,
        other => {
            return Err(NetError::Unauthenticated(format!(
                "expected the member's challenge, got {}",
                shown(&other)
            )))
        }
    };
    let own_nonce = auth::nonce();
    let proof = secret.map(|s| s.proof(Side::ControlCaller, &server_nonce, &own_nonce));
    let answer = Greeting::Proof {
        nonce: own_nonce.clone(),
        proof,
    };
    write_frame(stream, false, &answer).await?;
    match (next(stream).await?, secret) {
        (Greeting::Accepted { proof: Some(proof) }, Some(secret))
            if secret.verify(Side::ControlServer, &server_nonce, &own_nonce, &proof) =>
        {
            Ok(())
        }
        (Greeting::Accepted { proof: Some(_) }, Some(_)) => Err(NetError::Unauthenticated(
            "the member's proof does not match this member's cluster secret".into(),
        )),
        (Greeting::Accepted { proof: None }, Some(_)) => Err(NetError::Unauthenticated(
            "the member has no cluster secret; start every member with the same \
             --cluster-secret"
                .into(),
        )),
        (Greeting::Accepted { .. }, None) => Ok(()),
        (Greeting::Refused(why), _) => Err(NetError::Unauthenticated(format!(
            "the member refused this one: {why:.200}"
        ))),
        (other, _) => Err(NetError::Unauthenticated(format!(
            "expected the member's answer, got {}",
            shown(&other)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::wire::read_frame;

    /// Runs both sides over an in-memory pipe; answers (accepting side, calling side).
    async fn shake(
        server: Option<&str>,
        caller: Option<&str>,
    ) -> (Result<(), NetError>, Result<(), NetError>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let server = server.map(ClusterSecret::new);
        let caller = caller.map(ClusterSecret::new);
        tokio::join!(
            accept(&mut a, server.as_ref()),
            call(&mut b, caller.as_ref())
        )
    }

    #[tokio::test]
    async fn members_with_the_same_secret_accept_each_other() {
        let (server, caller) = shake(Some("s3cret"), Some("s3cret")).await;
        assert!(server.is_ok() && caller.is_ok(), "{server:?} {caller:?}");
    }

    #[tokio::test]
    async fn members_without_a_secret_accept_each_other() {
        let (server, caller) = shake(None, None).await;
        assert!(server.is_ok() && caller.is_ok(), "{server:?} {caller:?}");
    }

    #[tokio::test]
    async fn a_caller_with_another_secret_is_refused_and_told_why() {
        let (server, caller) = shake(Some("s3cret"), Some("guess")).await;
        let (server, caller) = (server.unwrap_err(), caller.unwrap_err());
        assert!(server.to_string().contains("does not match"), "{server}");
        assert!(caller.to_string().contains("--cluster-secret"), "{caller}");
    }

    #[tokio::test]
    async fn a_caller_without_a_secret_is_refused_by_a_member_with_one() {
        let (server, caller) = shake(Some("s3cret"), None).await;
        assert!(server
            .unwrap_err()
            .to_string()
            .contains("no cluster secret"));
        assert!(caller.is_err());
    }

    #[tokio::test]
    async fn a_caller_with_a_secret_refuses_a_member_without_one() {
        let (server, caller) = shake(None, Some("s3cret")).await;
        assert!(server.is_ok());
        assert!(caller
            .unwrap_err()
            .to_string()
            .contains("has no cluster secret"));
    }

    #[tokio::test]
    async fn a_caller_that_skips_the_handshake_gets_no_answer_to_its_request() {
        // An old-style caller: the opening, then a request frame at once.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let secret = ClusterSecret::new("s3cret");
        let old = async {
            b.write_all(OPENING).await.unwrap();
            write_frame(&mut b, false, &"a request").await.unwrap();
            // Whatever comes back is the challenge, never an answer.
            read_frame::<_, Greeting>(&mut b).await
        };
        let (server, seen) = tokio::join!(accept(&mut a, Some(&secret)), old);
        assert!(server.is_err());
        assert!(matches!(seen, Ok(Some(Greeting::Challenge { .. }))));
    }

    /// Opens a handshake with a member that has a secret, as a caller without it, and sends
    /// `answer` (raw bytes) to the challenge; answers the member's verdict.
    async fn intrude(answer: Vec<u8>) -> Result<(), NetError> {
        let (mut member, mut intruder) = tokio::io::duplex(1 << 16);
        let secret = ClusterSecret::new("s3cret");
        let intrude = async move {
            intruder.write_all(OPENING).await.unwrap();
            let challenge: Option<Greeting> = read_frame_within(&mut intruder, MAX_GREETING)
                .await
                .unwrap();
            assert!(matches!(challenge, Some(Greeting::Challenge { .. })));
            intruder.write_all(&answer).await.unwrap();
            // Kept open, as a stalling caller does.
            intruder
        };
        let (verdict, _intruder) = tokio::join!(accept(&mut member, Some(&secret)), intrude);
        verdict
    }

    #[tokio::test]
    async fn a_caller_without_the_secret_is_refused_on_a_greeting_s_length_before_its_bytes() {
        // Declares 64 MiB and sends one byte: refused at once, nothing allocated or awaited.
        let mut answer = (64u32 << 20).to_be_bytes().to_vec();
        answer.push(b'{');
        assert!(matches!(
            intrude(answer).await,
            Err(NetError::FrameTooLarge(len)) if len == 64 << 20
        ));
    }

    #[tokio::test]
    async fn what_a_caller_sends_reaches_the_member_s_log_cut_short() {
        let mut answer = Vec::new();
        let long = Greeting::Challenge {
            nonce: "x".repeat(900),
        };
        write_frame(&mut answer, false, &long).await.unwrap();
        let error = intrude(answer).await.unwrap_err().to_string();
        assert!(
            error.len() < 200,
            "an error of {} bytes: {error}",
            error.len()
        );
    }
}
