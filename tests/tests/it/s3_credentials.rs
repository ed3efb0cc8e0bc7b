//! Wrong credentials fail loudly: the S3 client reports an authentication failure (a
//! permission error whose message carries the server's reason), never a miss or a success.

use object_store::{ObjectStoreExt, PutPayload};

use crate::harness::{S3Env, S3Test, s3_test, test_client_options};

/// The S3 error code for a request signed with the wrong secret (AWS, MinIO, SeaweedFS).
const WRONG_SIGNATURE: &str = "SignatureDoesNotMatch";
/// The S3 error code for an access key the server does not know (AWS, MinIO, SeaweedFS).
const UNKNOWN_KEY: &str = "InvalidAccessKeyId";

/// The error of a PUT and of a GET made with `env`'s (tampered) credentials.
async fn put_and_get_errors(t: &S3Test, env: &S3Env) -> [object_store::Error; 2] {
    let store = env
        .builder_with_client_options(test_client_options())
        .build()
        .expect("the builder accepts any credentials");
    let location = t.path("denied");
    let put = store.put(&location, PutPayload::from_static(b"must not be stored")).await;
    let put = put.expect_err("a PUT with wrong credentials must fail");
    // The GET targets an object that exists, so a "not found" would be a wrong answer too.
    let existing = t.path("existing");
    t.store.put(&existing, PutPayload::from_static(b"x")).await.expect("PUT with good credentials");
    let get = store.get(&existing).await.expect_err("a GET with wrong credentials must fail");
    [put, get]
}

/// Asserts that `err` is an authentication failure: object_store's permission kind, the
/// HTTP status, and the server's error `code` in the message.
fn assert_auth_failure(what: &str, err: &object_store::Error, code: &str) {
    assert!(
        matches!(
            err,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ),
        "{what}: expected PermissionDenied or Unauthenticated, got {err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("403 Forbidden") || message.contains("401 Unauthorized"),
        "{what}: the message should carry the HTTP status: {message}"
    );
    assert!(message.contains(code), "{what}: the message should name `{code}`: {message}");
}

#[tokio::test]
async fn wrong_secret_key_is_an_auth_error() {
    let t = s3_test!("wrong_secret_key_is_an_auth_error");
    let mut env = t.env.clone();
    env.secret_access_key = format!("{}-wrong", env.secret_access_key);
    let [put, get] = put_and_get_errors(&t, &env).await;
    assert_auth_failure("PUT with a wrong secret key", &put, WRONG_SIGNATURE);
    assert_auth_failure("GET with a wrong secret key", &get, WRONG_SIGNATURE);
    t.cleanup().await;
}

#[tokio::test]
async fn unknown_access_key_is_an_auth_error() {
    let t = s3_test!("unknown_access_key_is_an_auth_error");
    let mut env = t.env.clone();
    env.access_key_id = "TCUNKNOWNKEY0000".to_owned();
    let [put, get] = put_and_get_errors(&t, &env).await;
    assert_auth_failure("PUT with an unknown access key", &put, UNKNOWN_KEY);
    assert_auth_failure("GET with an unknown access key", &get, UNKNOWN_KEY);
    t.cleanup().await;
}
