// The N-API helpers that honeygate.cc, privileges.cc, relay.cc and udp.cc share: throwing (a usage error, an
// error that names the failed syscall), reading arguments, returning nothing.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "socket.h"

namespace hg {

// Throws TypeError(usage): the caller got the arguments wrong. Returns nullptr so that
// callers can `return Usage(...)`.
inline napi_value Usage(napi_env env, const char* usage) {
  napi_throw_type_error(env, nullptr, usage);
  return nullptr;
}

// Throws Error(message). Returns nullptr.
inline napi_value Throw(napi_env env, const char* message) {
  napi_throw_error(env, nullptr, message);
  return nullptr;
}

// Throws Error("SYSCALL(ARGS): ECODE") with .code and .syscall. Returns nullptr.
inline napi_value ThrowSyscall(napi_env env, const char* syscall, const std::string& args, int err) {
  std::string code = ErrName(err);
  std::string message = SocketError{syscall, args, err}.Message();
  napi_value code_value, message_value, syscall_value, error;
  napi_create_string_utf8(env, code.c_str(), NAPI_AUTO_LENGTH, &code_value);
  napi_create_string_utf8(env, message.c_str(), NAPI_AUTO_LENGTH, &message_value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value);
  napi_create_error(env, code_value, message_value, &error);
  napi_set_named_property(env, error, "syscall", syscall_value);
  napi_throw(env, error);
  return nullptr;
}

// An integer number in [min, max], or false.
inline bool GetInteger(napi_env env, napi_value value, double min, double max, double* out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) return false;
  if (napi_get_value_double(env, value, out) != napi_ok) return false;
  return std::floor(*out) == *out && *out >= min && *out <= max;
}

// A number as uint32 (JS ToUint32), or false when it is not a number.
inline bool GetUint32(napi_env env, napi_value value, uint32_t* out) {
  return napi_get_value_uint32(env, value, out) == napi_ok;
}

// A string's UTF-8 bytes; "" when it is not a string.
inline std::string GetString(napi_env env, napi_value value) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, value, nullptr, 0, &len) != napi_ok) return "";
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, value, s.data(), len + 1, &len);
  return s;
}

// Whether a value is a string.
inline bool IsString(napi_env env, napi_value value) {
  napi_valuetype type;
  return napi_typeof(env, value, &type) == napi_ok && type == napi_string;
}

inline napi_value Undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

// undefined for "", else the message as a string: the relay's "why it could not" answers.
inline napi_value MessageOrUndefined(napi_env env, const std::string& message) {
  if (message.empty()) return Undefined(env);
  napi_value v;
  napi_create_string_utf8(env, message.data(), message.size(), &v);
  return v;
}

// A JS callback that native code calls later from the event loop (a batch of records for
// JS): the function, the object napi_make_callback needs as `this` and async resource, and
// the async context, made by Init() and released by Release(). relay.cc and udp.cc hand
// their batches over this way.
struct BatchCallback {
  napi_ref callback = nullptr;
  napi_ref resource = nullptr;
  napi_async_context async = nullptr;

  void Init(napi_env env, napi_value fn, const char* name) {
    napi_create_reference(env, fn, 1, &callback);
    napi_value resourceName, object;
    napi_create_object(env, &object);
    napi_create_reference(env, object, 1, &resource);
    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resourceName);
    napi_async_init(env, object, resourceName, &async);
  }

  // Calls it with argv; an exception it throws goes to process 'uncaughtException'.
  void Call(napi_env env, size_t argc, napi_value* argv) {
    napi_value cb, recv;
    napi_get_reference_value(env, callback, &cb);
    napi_get_reference_value(env, resource, &recv);
    if (napi_make_callback(env, async, recv, cb, argc, argv, nullptr) == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }

  void Release(napi_env env) {
    napi_delete_reference(env, callback);
    napi_delete_reference(env, resource);
    napi_async_destroy(env, async);
  }
};

// A new Float64Array of `count` numbers and its storage, or false (an exception pending).
inline bool NewNumbers(napi_env env, size_t count, double** data, napi_value* array) {
  napi_value buffer;
  return napi_create_arraybuffer(env, count * sizeof(double), reinterpret_cast<void**>(data), &buffer) == napi_ok &&
         napi_create_typedarray(env, napi_float64_array, count, buffer, 0, array) == napi_ok;
}

// A function property for napi_define_properties / napi_define_class.
inline napi_property_descriptor Method(const char* name, napi_callback fn, napi_property_attributes attributes) {
  return {name, nullptr, fn, nullptr, nullptr, nullptr, attributes, nullptr};
}

}  // namespace hg
