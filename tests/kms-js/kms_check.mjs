// kekd's AWS KMS API through AWS's own JavaScript clients, as an application would use them:
//   (a) the AWS SDK for JavaScript v3 (@aws-sdk/client-kms): Encrypt, Decrypt, GenerateDataKey,
//       and a Decrypt under the wrong encryption context;
//   (b) the AWS Encryption SDK for JavaScript (@aws-crypto/client-node): a message encrypted and
//       decrypted with a KMS keyring whose key is a kekd key ARN, with an encryption context.
//
// Environment: KEKD_ADDR (http://127.0.0.1:<port>), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
// (a kekd client id and its secret), KEKD_KEY_ARN, and optionally AWS_REGION (us-east-1).
//
// Prints one JSON line, {"ok": true, ...} with what tests/e2e/test_kms_js.py checks natively, and
// exits 0 only when every check passed; otherwise prints the failure to stderr, a JSON line with
// "ok": false, and exits 1. Installed by scripts/kms-js-setup.sh; run by tests/e2e/test_kms_js.py.
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'

import {
  KMS,
  KMSClient,
  EncryptCommand,
  DecryptCommand,
  GenerateDataKeyCommand,
} from '@aws-sdk/client-kms'
import {
  buildClient,
  CommitmentPolicy,
  KmsKeyringNode,
  getClient,
} from '@aws-crypto/client-node'

const require = createRequire(import.meta.url)
const checks = []
const summary = { ok: false, checks }

function need(name) {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

function check(name, condition, detail) {
  if (!condition) {
    const why = detail === undefined ? '' : `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`
    throw new Error(`check failed: ${name}${why}`)
  }
  checks.push(name)
}

function sameBytes(a, b) {
  return a instanceof Uint8Array && b instanceof Uint8Array && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0
}

const b64 = (bytes) => Buffer.from(bytes).toString('base64')

// Awaits a promise that must reject; returns the error.
async function rejection(promise, what) {
  try {
    await promise
  } catch (e) {
    return e
  }
  throw new Error(`check failed: ${what} succeeded`)
}

function version(pkg) {
  return require(`${pkg}/package.json`).version
}

async function sdkChecks(env) {
  const kms = new KMSClient({
    endpoint: env.endpoint,
    region: env.region,
    credentials: env.credentials,
    maxAttempts: 1,
  })
  const context = { purpose: 'e2e', tenant: 'acme' }
  const plaintext = randomBytes(48)

  const enc = await kms.send(new EncryptCommand({ KeyId: env.arn, Plaintext: plaintext, EncryptionContext: context }))
  check('sdk Encrypt answers the key ARN', enc.KeyId === env.arn, enc.KeyId)
  check('sdk Encrypt answers a CiphertextBlob',
    enc.CiphertextBlob instanceof Uint8Array && enc.CiphertextBlob.length > 0)
  check('sdk Encrypt answers SYMMETRIC_DEFAULT', enc.EncryptionAlgorithm === 'SYMMETRIC_DEFAULT',
    enc.EncryptionAlgorithm)

  const dec = await kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: context }))
  check('sdk Decrypt returns the plaintext', sameBytes(dec.Plaintext, plaintext))
  check('sdk Decrypt answers the key ARN', dec.KeyId === env.arn, dec.KeyId)
  const named = await kms.send(new DecryptCommand({
    CiphertextBlob: enc.CiphertextBlob, EncryptionContext: context, KeyId: env.arn,
  }))
  check('sdk Decrypt naming the key ARN returns the plaintext', sameBytes(named.Plaintext, plaintext))

  const dk = await kms.send(new GenerateDataKeyCommand({
    KeyId: env.arn, KeySpec: 'AES_256', EncryptionContext: context,
  }))
  check('sdk GenerateDataKey AES_256 returns 32 bytes',
    dk.Plaintext instanceof Uint8Array && dk.Plaintext.length === 32, dk.Plaintext && dk.Plaintext.length)
  check('sdk GenerateDataKey answers the key ARN', dk.KeyId === env.arn, dk.KeyId)
  const dkBack = await kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob, EncryptionContext: context }))
  check('sdk Decrypt of the data key returns its plaintext', sameBytes(dkBack.Plaintext, dk.Plaintext))

  const wrong = await rejection(
    kms.send(new DecryptCommand({
      CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { ...context, tenant: 'other' },
    })),
    'sdk Decrypt under the wrong encryption context')
  check('sdk Decrypt under the wrong context is InvalidCiphertextException',
    wrong.name === 'InvalidCiphertextException', `${wrong.name}: ${wrong.message}`)
  check('sdk InvalidCiphertextException is HTTP 400', wrong.$metadata && wrong.$metadata.httpStatusCode === 400,
    wrong.$metadata)

  summary.sdk = {
    ciphertext: b64(enc.CiphertextBlob),
    plaintext: b64(plaintext),
    context,
    datakey_ciphertext: b64(dk.CiphertextBlob),
    datakey_plaintext: b64(dk.Plaintext),
  }
}

async function esdkChecks(env) {
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
  // The keyring calls clientProvider(region) with the region of the key ARN and then the client's
  // generateDataKey / encrypt / decrypt methods: the aggregated KMS client, as the ESDK's own
  // getClient(KMS, config) makes it, pointed at kekd.
  const regions = []
  const kmsFor = getClient(KMS, { endpoint: env.endpoint, credentials: env.credentials, maxAttempts: 1 })
  const clientProvider = (region) => {
    regions.push(region)
    return kmsFor(region)
  }
  const keyring = new KmsKeyringNode({ generatorKeyId: env.arn, clientProvider })
  const context = { purpose: 'e2e', tenant: 'acme' }
  const message = Buffer.from(`kekd e2e message ${b64(randomBytes(24))}`)

  const { result, messageHeader: sealed } = await encrypt(keyring, message, { encryptionContext: context })
  check('esdk encrypt makes a message', result instanceof Uint8Array && result.length > message.length)
  check('esdk keyring asks for a client for the ARN region',
    regions.length > 0 && regions.every((r) => r === env.region), regions)
  const edks = sealed.encryptedDataKeys.filter((k) => k.providerId === 'aws-kms')
  check('esdk message holds one aws-kms data key for the ARN',
    sealed.encryptedDataKeys.length === 1 && edks.length === 1 && edks[0].providerInfo === env.arn,
    sealed.encryptedDataKeys.map((k) => [k.providerId, k.providerInfo]))

  const { plaintext, messageHeader } = await decrypt(keyring, result)
  check('esdk decrypt returns the message', sameBytes(plaintext, message))
  for (const [k, v] of Object.entries(context)) {
    check(`esdk decrypted header holds ${k}=${v}`, messageHeader.encryptionContext[k] === v,
      messageHeader.encryptionContext)
  }
  check('esdk decrypted header names the ARN',
    messageHeader.encryptedDataKeys.some((k) => k.providerId === 'aws-kms' && k.providerInfo === env.arn))

  // A keyring for another key does not open it: the message names only the kekd key.
  const otherArn = env.arn.replace(/key\/.*$/, 'key/00000000-0000-4000-8000-000000000000')
  const other = new KmsKeyringNode({ generatorKeyId: otherArn, clientProvider })
  const refused = await rejection(decrypt(other, result), 'esdk decrypt with a keyring for another key')
  check('esdk decrypt with a keyring for another key fails', refused instanceof Error, String(refused))
  // and encrypting to a key kekd does not have fails: GenerateDataKey answers NotFoundException.
  const missing = await rejection(encrypt(other, message, { encryptionContext: context }),
    'esdk encrypt with a keyring for a key kekd does not have')
  check('esdk encrypt with a key kekd does not have fails with NotFoundException',
    missing.name === 'NotFoundException', `${missing.name}: ${missing.message}`)
  // a tampered message does not decrypt
  const tampered = Buffer.from(result)
  tampered[tampered.length - 40] ^= 1
  const broken = await rejection(decrypt(keyring, tampered), 'esdk decrypt of a tampered message')
  check('esdk decrypt of a tampered message fails', broken instanceof Error, String(broken))

  summary.esdk = {
    // the data key as kekd wrapped it through GenerateDataKey, and the context it is bound to
    // (the message's, with the signing suite's aws-crypto-public-key)
    edk_ciphertext: b64(edks[0].encryptedDataKey),
    context: { ...messageHeader.encryptionContext },
    suite: messageHeader.suiteId,
    message_bytes: result.length,
  }
}

async function main() {
  const env = {
    endpoint: need('KEKD_ADDR'),
    region: process.env.AWS_REGION || 'us-east-1',
    credentials: { accessKeyId: need('AWS_ACCESS_KEY_ID'), secretAccessKey: need('AWS_SECRET_ACCESS_KEY') },
    arn: need('KEKD_KEY_ARN'),
  }
  summary.node = process.versions.node
  summary.versions = {
    '@aws-sdk/client-kms': version('@aws-sdk/client-kms'),
    '@aws-crypto/client-node': version('@aws-crypto/client-node'),
  }
  await sdkChecks(env)
  await esdkChecks(env)
  summary.ok = true
}

try {
  await main()
  console.log(JSON.stringify(summary))
} catch (e) {
  console.error(`kms_check: ${e && e.stack ? e.stack : e}`)
  if (e && e.$metadata) console.error(`kms_check: ${e.name} ${JSON.stringify(e.$metadata)}`)
  summary.error = String(e && e.message ? e.message : e)
  console.log(JSON.stringify(summary))
  process.exitCode = 1
}
