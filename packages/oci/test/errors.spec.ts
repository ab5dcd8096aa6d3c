import assert from 'node:assert/strict'
import { isOciErrorCode, OCI_ERROR_MESSAGE, OCI_ERROR_STATUS, OciError, ociErrorBody } from '../src/index.ts'

// The codes of the OCI distribution spec's error table (spec.md, "Error Codes"), and the statuses
// distribution/distribution answers them with.
const SPEC_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
  'TOOMANYREQUESTS'
]

describe('OCI error codes', () => {
  it('knows every code of the distribution spec', () => {
    for (const code of SPEC_CODES) assert.ok(isOciErrorCode(code), code)
  })

  it('has a status and a message for every code', () => {
    for (const code of Object.keys(OCI_ERROR_STATUS)) {
      assert.ok(isOciErrorCode(code))
      assert.ok(OCI_ERROR_STATUS[code] >= 400 && OCI_ERROR_STATUS[code] < 500)
      assert.ok(OCI_ERROR_MESSAGE[code].length > 0)
    }
  })

  it('answers the unknown-content codes with 404', () => {
    assert.equal(OCI_ERROR_STATUS.MANIFEST_UNKNOWN, 404)
    assert.equal(OCI_ERROR_STATUS.BLOB_UNKNOWN, 404)
  })

  it('does not take inherited object keys for codes', () => {
    assert.equal(isOciErrorCode('toString'), false)
  })

  it('builds the spec’s JSON body', () => {
    assert.deepEqual(ociErrorBody('MANIFEST_UNKNOWN', 'no such tag', { tag: 'x' }), {
      errors: [{ code: 'MANIFEST_UNKNOWN', message: 'no such tag', detail: { tag: 'x' } }]
    })
  })

  it('leaves detail out when there is none', () => {
    assert.equal(
      JSON.stringify(ociErrorBody('BLOB_UNKNOWN')),
      '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}'
    )
  })

  it('gives an OciError its status and body', () => {
    const err = new OciError('NAME_INVALID')
    assert.equal(err.status, 400)
    assert.deepEqual(err.toBody(), { errors: [{ code: 'NAME_INVALID', message: 'invalid repository name' }] })
  })
})
